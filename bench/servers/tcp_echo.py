"""Raw TCP echo server (no WebSocket), the loopback baseline for
bench/run.py: the ceiling for a Python server on this machine.

    python tcp_echo.py PORT
"""

import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        while True:
            n = sock.recv_into(buffer)
            if not n:
                return
            sock.sendall(view[:n])


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == '__main__':
    with Server(('127.0.0.1', int(sys.argv[1])), Echo) as server:
        print('listening on %s' % sys.argv[1], flush=True)
        server.serve_forever()
