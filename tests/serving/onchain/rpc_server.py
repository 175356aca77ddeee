"""A real JSON-RPC endpoint over HTTP in front of the in-process chain.

No public node is reachable here, so the JSON-RPC path of ``oracle push`` is tested against
this: HTTP POSTs of JSON-RPC 2.0 requests, answered by the same chain the test reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from web3._utils.encoding import Web3JsonEncoder

from serving.evm_chain import EvmChain


@contextmanager
def serve_json_rpc(chain: EvmChain) -> Iterator[str]:
    """Serve ``chain`` at ``http://127.0.0.1:<free port>/`` while the block runs."""
    manager = chain.w3.manager  # the provider plus web3's RPC-format middleware
    lock = threading.Lock()  # eth-tester is not thread-safe

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            params = request.get("params", [])
            if request["method"] in ("eth_call", "eth_estimateGas") and params:
                # A node takes a call without "from"; eth-tester needs a funded sender.
                params[0].setdefault("from", chain.accounts[0])
            try:
                with lock:
                    response = {"result": manager.request_blocking(request["method"], params)}
            except Exception as exc:  # a node answers a failed call with a JSON-RPC error
                message = str(exc.args[0]) if exc.args else type(exc).__name__
                response = {
                    "error": {"code": 3 if "revert" in message else -32000, "message": message}
                }
            body = json.dumps(
                {"jsonrpc": "2.0", "id": request.get("id"), **response}, cls=Web3JsonEncoder
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
