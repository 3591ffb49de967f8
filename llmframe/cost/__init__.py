"""Money: prices, estimates, budgets and the usage columns."""
