"""Gemini's batch API (models/{model}:batchGenerateContent, :asyncBatchEmbedContent for embeddings, batches/{id})
and its resumable file uploads, as google-genai's client.batches and client.files speak them."""

from __future__ import annotations

import json
import time

from aiohttp import web

from . import embeddings
from .batches import Batch, Handler, VendorBatches, iso_time, unauthorized
from .gemini_generate import GEMINI
from .openai_chat import BadRequest


class _GeminiRoute:
    """The match_info (and the uploaded files) a dialect's parse reads, for a request that came inside a batch."""

    def __init__(self, model: str, files):
        self.match_info = {"model": model}
        self.app = {"llmframe_files": files}  # fileData parts naming files uploaded here: answered from their bytes


def _file_ids(raw) -> list[str]:
    """The ids of the uploaded files a request's fileData parts name (the batch reads them when it runs)."""
    found = []
    for content in raw.get("contents") or []:  # parsed: a list of objects
        parts = content.get("parts")
        for part in parts if isinstance(parts, list) else []:
            spec = (part.get("fileData") or part.get("file_data")) if isinstance(part, dict) else None
            uri = (spec.get("fileUri") or spec.get("file_uri")) if isinstance(spec, dict) else None
            if isinstance(uri, str) and "/files/" in uri:
                found.append(uri.rsplit("/", 1)[-1])
    return found


class GeminiBatches(VendorBatches):
    """The Gemini batch and file routes of a BatchService."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of each route; GET /v1/batches[/{id}] are shared with OpenAI's."""
        routes: list[tuple[str, str, Handler]] = []
        for version in ("v1beta", "v1"):
            routes += [
                ("POST", f"/{version}/models/{{model:[^/:]+}}:batchGenerateContent", self.create),
                ("POST", f"/{version}/models/{{model:[^/:]+}}:asyncBatchEmbedContent", self.create_embeddings),
                ("POST", f"/{version}/batches/{{id:[^/:]+}}:cancel", self.cancel),
                ("POST", f"/upload/{version}/files", self.upload),
                ("GET", f"/{version}/files/{{id:[^/:]+}}:download", self.download),
                ("DELETE", f"/{version}/files/{{id:[^/:]+}}", self.delete),
            ]
        return [*routes, ("GET", "/v1beta/batches/{id:[^/:]+}", self.get_batch),
                ("GET", "/v1beta/batches", self.list_batches), ("GET", "/v1beta/files", self.list_files)]

    def _object(self, batch: Batch) -> dict:
        """The batch's Operation, its answers inlined once it has ended (or the name of their file)."""
        state, done = batch.state()
        if batch.extra["uses_files"]:  # the requests that ran by now read their files now
            for i in range(batch.extra.setdefault("read", 0), done):
                self._gone(batch, i)
            batch.extra["read"] = max(done, batch.extra["read"])
        succeeded, failed, _ = batch.counts()
        word = {"running": "BATCH_STATE_RUNNING", "completed": "BATCH_STATE_SUCCEEDED",
                "expired": "BATCH_STATE_EXPIRED", "cancelled": "BATCH_STATE_CANCELLED"}[state]
        metadata: dict = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{batch.model}", "displayName": batch.tag or "", "state": word,
            "createTime": iso_time(batch.created_at), "updateTime": iso_time(time.time()),
            "batchStats": {"requestCount": str(len(batch.items)), "successfulRequestCount": str(succeeded),
                           "failedRequestCount": str(failed), "pendingRequestCount": str(len(batch.items) - done)},
        }
        if state != "running":
            metadata["endTime"] = iso_time(time.time())
            if batch.extra.get("file"):
                metadata["output"] = {"responsesFile": f"files/out-{batch.id}"}
            elif batch.extra.get("embedding"):
                metadata["output"] = {"inlinedEmbedContentResponses": {
                    "inlinedResponses": self._lines(batch, inline=True)}}
            else:
                metadata["output"] = {"inlinedResponses": {"inlinedResponses": self._lines(batch, inline=True)}}
        return {"name": f"batches/{batch.id}", "metadata": metadata}

    def _lines(self, batch: Batch, *, inline: bool) -> list[dict]:
        """The finished requests' responses: inlined (with their metadata) or as the lines of a file (with keys)."""
        _state, done = batch.state()
        lines = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items[:done]):
            gone = self._gone(batch, i)
            reply = None if gone is not None else (self._embedding(batch, i) if batch.extra.get("embedding")
                                                   else self.service.reply(GEMINI, batch, i))
            entry: dict = {"response": reply} if reply is not None else {"error": gone or {
                "code": 500, "message": "simulated batch line error", "status": "INTERNAL"}}
            if inline:
                if batch.extra["metadata"][i] is not None:
                    entry["metadata"] = batch.extra["metadata"][i]
            else:
                entry["key"] = custom_id
            lines.append(entry)
        return lines

    def _embedding(self, batch: Batch, i: int) -> dict | None:
        """An embedding batch's response to item i (the online route's vector, its tokens), None if its line fails."""
        item = embeddings.batch_item(batch, i, self.service.sim.embedding_input_tokens)
        return None if item is None else {"embedding": {"values": item[2][0].tolist()}, "tokenCount": item[3]}

    async def create_embeddings(self, request: web.Request) -> web.Response:
        """POST models/{model}:asyncBatchEmbedContent (client.batches.create_embeddings): embedding requests,
        inlined or in an uploaded file of {"key", "request"} lines."""
        return await self.create(request, embedding=True)

    def _gone(self, batch: Batch, i: int) -> dict | None:
        """The error of request i if a file it names was deleted before it ran (as the API reads files then)."""
        if not batch.extra["uses_files"]:
            return None
        memo = batch.extra.setdefault("gone", {})
        if i not in memo:
            missing = [f for f in batch.extra["files"][i] if self.service.file(f) is None]
            memo[i] = None if not missing else {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                                f"File files/{missing[0]} does not exist or you do not have "
                                                "permission to access it."}
        return memo[i]

    async def create(self, request: web.Request, embedding: bool = False) -> web.Response:
        """POST models/{model}:batchGenerateContent: a batch of inlined requests, or of an uploaded file's."""
        if (refused := unauthorized(GEMINI, request)) is not None:
            return refused
        body = await request.json()
        model = request.match_info["model"]
        spec = (body.get("batch") or {}) if isinstance(body, dict) else {}
        config = spec.get("inputConfig") or {}
        route = _GeminiRoute(model, self.service.file)
        dialect = embeddings.GEMINI if embedding else GEMINI
        items, metadata = [], []
        file_name = config.get("fileName") or config.get("file_name")  # proto JSON: either spelling (the SDK's own)
        if file_name:
            found = self.service.file(file_name.removeprefix("files/"))
            if found is None:
                return GEMINI.error(404, f"File {file_name} not found")
            entries = [json.loads(t) for t in found[0].decode().splitlines() if t.strip()]
            pairs = [(e.get("key"), e.get("request"), None) for e in entries]
        elif isinstance((config.get("requests") or {}).get("requests"), list):
            entries = config["requests"]["requests"]
            pairs = [((e.get("metadata") or {}).get("key", str(n)), e.get("request"), e.get("metadata"))
                     for n, e in enumerate(entries)]
        else:
            return GEMINI.error(400, "batch.inputConfig needs requests or a fileName")
        for number, (key, raw, meta) in enumerate(pairs):
            try:
                chat = dialect.parse(route, raw)  # type: ignore[arg-type]  # parse reads only match_info
            except BadRequest as exc:
                return GEMINI.error(400, f"request {number}: {exc}")
            items.append((key, raw, chat))
            metadata.append(meta)
        service = self.service
        batch = service.add(Batch("gemini", service.new_id("sim"), items, service.settings, model,
                                  tag=spec.get("displayName"),
                                  extra={"file": bool(file_name), "metadata": metadata, "embedding": embedding,
                                         "files": (files := [_file_ids(raw) for _key, raw, _chat in items]),
                                         "uses_files": any(files)}))
        obj = self._object(batch)
        if batch.state()[0] == "running":
            obj["metadata"]["state"] = "BATCH_STATE_PENDING"
        return web.json_response(obj)

    async def get_batch(self, request: web.Request) -> web.Response:
        """GET batches/{id}."""
        batch = self.service.lookup(GEMINI, "gemini", request, "batch not found")
        return web.json_response(self._object(batch)) if isinstance(batch, Batch) else batch

    async def list_batches(self, request: web.Request) -> web.Response:
        """GET batches: newest first."""
        if (refused := unauthorized(GEMINI, request)) is not None:
            return refused
        found = self.service.listed("gemini")
        return web.json_response({"operations": [self._object(b) for b in reversed(found)]})

    async def cancel(self, request: web.Request) -> web.Response:
        """POST batches/{id}:cancel."""
        batch = self.service.lookup(GEMINI, "gemini", request, "batch not found")
        if not isinstance(batch, Batch):
            return batch
        batch.cancel()
        return web.json_response({})

    async def upload(self, request: web.Request) -> web.Response:
        """The resumable upload protocol: a start request gets an upload URL; chunks go to it, the last finalizes."""
        command = request.headers.get("X-Goog-Upload-Command", "")
        if "start" in command:
            if (refused := unauthorized(GEMINI, request)) is not None:
                return refused  # the chunks that follow carry no key: the upload URL is their credential
            upload_id = self.service.new_id("up")
            self.service.upload(upload_id, (await request.json()).get("file") or {})
            url = f"{request.scheme}://{request.host}{request.path}?upload_id={upload_id}"
            return web.json_response({}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
        upload = self.service.upload(request.query.get("upload_id", ""))
        if upload is None:
            return GEMINI.error(404, "unknown upload")
        upload["data"] += await request.read()
        if "finalize" not in command:
            return web.json_response({}, headers={"X-Goog-Upload-Status": "active"})
        file_id = self.service.new_id("simfile")
        meta = upload["meta"]  # as the SDK sends it: snake_case (the API takes either spelling)
        obj = {"name": f"files/{file_id}", "displayName": meta.get("displayName") or meta.get("display_name") or "",
               "mimeType": meta.get("mimeType") or meta.get("mime_type") or "jsonl",
               "sizeBytes": str(len(upload["data"])),
               "createTime": iso_time(time.time()), "state": "ACTIVE", "source": "UPLOADED",
               "uri": f"{request.scheme}://{request.host}/v1beta/files/{file_id}"}  # what a fileData part names
        self.service.store_file(file_id, bytes(upload["data"]), obj)
        return web.json_response({"file": obj}, headers={"X-Goog-Upload-Status": "final"})

    async def list_files(self, request: web.Request) -> web.Response:
        """GET files: the uploaded files, newest first, a page at a time (pageSize, pageToken)."""
        if (refused := unauthorized(GEMINI, request)) is not None:
            return refused
        found = [self.service.file(f) for f in reversed(self.service.files())]
        found = [obj for entry in found if entry is not None and (obj := entry[1]).get("name")]
        size = int(request.query.get("pageSize") or 10)
        start = int(request.query.get("pageToken") or 0)
        body: dict = {"files": found[start:start + size]}
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)

    async def delete(self, request: web.Request) -> web.Response:
        """DELETE files/{id}: the file is gone (a fileData part naming it is refused from then on)."""
        if (refused := unauthorized(GEMINI, request)) is not None:
            return refused
        if not self.service.delete_file(request.match_info["id"]):
            return GEMINI.error(404, f"File files/{request.match_info['id']} not found")
        return web.json_response({})

    async def download(self, request: web.Request) -> web.Response:
        """GET files/{id}:download: a file batch's responses (files/out-<batch id>), one JSON line each."""
        if (refused := unauthorized(GEMINI, request)) is not None:
            return refused
        name = request.match_info["id"]
        batch = self.service.find("gemini", name.removeprefix("out-")) if name.startswith("out-") else None
        if batch is None:
            return GEMINI.error(404, f"File files/{name} not found")
        lines = self._lines(batch, inline=False)
        return web.Response(body="".join(json.dumps(line) + "\n" for line in lines).encode(),
                            content_type="application/octet-stream")
