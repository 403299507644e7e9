"""A moto server (AWS stand-in) on 127.0.0.1, on a port the OS picks, serving one request at a
time: moto checks a DynamoDB condition expression and then writes in two steps, so its usual
threaded server lets two concurrent conditional writes both pass, which DynamoDB never does.

Prints the port on the first line of stdout. With --until-stdin-closes it exits when its stdin
closes (tests that spawn it); otherwise it serves until killed (scripts/test.sh).
"""
import os
import sys
import threading

from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def app(environ, start_response):
    with lock:
        return list(inner(environ, start_response))


server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
print(server.server_address[1], flush=True)
if "--until-stdin-closes" in sys.argv:
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
server.serve_forever()
