"""Money: prices, estimates, budgets, the cost meter the engine calls, and the usage columns."""
