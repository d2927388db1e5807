"""Sends N copies of one POST over a few keep-alive connections, each next
request as soon as its connection's answer is whole: a fixed amount of work
for bench/serving/instructions.sh (wrk runs for a time, not a count).

    python3 bench/serving/drive.py PORT PATH BODY_FILE N [CONNECTIONS]
"""

import select
import socket
import sys


def main() -> None:
    port, path, body_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    with open(body_file, "rb") as f:
        body = f.read()
    request = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    socks = [socket.create_connection(("127.0.0.1", int(port))) for _ in range(connections)]
    pending = {s: b"" for s in socks}
    sent = 0
    for s in socks[: min(n, connections)]:
        s.sendall(request)
        sent += 1
    answered = 0
    while answered < n:
        readable, _, _ = select.select(socks, [], [])
        for s in readable:
            data = s.recv(65536)
            if not data:
                sys.exit("the server closed a connection")
            pending[s] += data
            while True:
                buf = pending[s]
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = buf[:head_end].decode("latin-1")
                status = head.split(" ", 2)[1]
                if status != "200":
                    sys.exit(f"answer {status}: {buf[:200]!r}")
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")[1:]
                    if line.lower().startswith("content-length:")
                )
                if len(buf) < head_end + 4 + length:
                    break
                pending[s] = buf[head_end + 4 + length :]
                answered += 1
                if sent < n:
                    s.sendall(request)
                    sent += 1


if __name__ == "__main__":
    main()
