#!/usr/bin/env python3
"""Records the seed corpus of the fuzz targets from real client sessions.

A relay between real clients (mysql CLI, pymysql, libmariadb, Go) and a real MariaDB server. It
splits both directions into MySQL packets and writes the bytes each target parses to
fuzz/corpus/<target>/<sha1 prefix> (deduplicated, at most --per-target files each):

  framing          the raw client byte stream of a connection (first 8 KiB)
  greeting         the server's initial handshake payload
  handshake        the client's handshake response payload
  query            SQL text of COM_QUERY / COM_STMT_PREPARE
  command          any other command payload (COM_INIT_DB, COM_FIELD_LIST, COM_STMT_CLOSE, ...)
  stmt_execute     u16 LE parameter count of the statement, then the COM_STMT_EXECUTE payload
  send_long_data   COM_STMT_SEND_LONG_DATA payloads
  change_user      COM_CHANGE_USER payloads (u32 LE client capabilities first)
  prepare_ok       the server's COM_STMT_PREPARE_OK payload
  response         the raw server byte stream answering one command (first 8 KiB)

Usage: capture.py LISTEN_PORT SERVER_PORT [--per-target N]; stop it with SIGTERM/SIGINT.
TLS is not relayed: run the clients with TLS off.
"""
import hashlib
import os
import socket
import struct
import sys
import threading

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
CAP = 8192
lock = threading.Lock()
counts = {}


def save(target, data, limit):
    with lock:
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()[:16]
        path = os.path.join(d, name)
        if os.path.exists(path) or counts.get(target, len(os.listdir(d))) >= limit:
            return
        with open(path, "wb") as f:
            f.write(data)
        counts[target] = len(os.listdir(d))


def packets(buf):
    """Splits complete packets off buf: returns ([(seq, payload)], rest)."""
    out = []
    while len(buf) >= 4:
        n = buf[0] | buf[1] << 8 | buf[2] << 16
        if len(buf) < 4 + n:
            break
        out.append((buf[3], bytes(buf[4 : 4 + n])))
        buf = buf[4 + n :]
    return out, buf


class Conn:
    def __init__(self, limit):
        self.limit = limit
        self.raw_client = bytearray()
        self.cbuf = bytearray()
        self.sbuf = bytearray()
        self.reply = bytearray()
        self.caps = 0
        self.greeted = False
        self.logged_in = False
        self.last_cmd = None
        self.params = {}

    def from_client(self, data):
        if len(self.raw_client) < CAP:
            self.raw_client += data[: CAP - len(self.raw_client)]
        self.cbuf += data
        pkts, self.cbuf = packets(self.cbuf)
        for seq, p in pkts:
            if not self.logged_in and seq == 1 and len(p) >= 4:
                self.caps = struct.unpack("<I", p[:4])[0]
                save("handshake", p, self.limit)
                continue
            if seq != 0 or not p:
                continue
            self.logged_in = True
            self.flush_reply()
            cmd, body = p[0], p[1:]
            self.last_cmd = cmd
            if cmd in (0x03, 0x16):
                save("query", body, self.limit)
            elif cmd == 0x17 and len(body) >= 4:
                sid = struct.unpack("<I", body[:4])[0]
                save("stmt_execute", struct.pack("<H", self.params.get(sid, 0)) + p, self.limit)
            elif cmd == 0x18:
                save("send_long_data", p, self.limit)
            elif cmd == 0x11:
                save("change_user", struct.pack("<I", self.caps) + body, self.limit)
            else:
                save("command", p, self.limit)

    def from_server(self, data):
        if self.logged_in and len(self.reply) < CAP:
            self.reply += data[: CAP - len(self.reply)]
        self.sbuf += data
        pkts, self.sbuf = packets(self.sbuf)
        for seq, p in pkts:
            if not self.greeted:
                self.greeted = True
                save("greeting", p, self.limit)
            elif self.last_cmd == 0x16 and seq == 1 and p[:1] == b"\x00" and len(p) >= 12:
                sid, _cols, params = struct.unpack("<IHH", p[1:9])
                self.params[sid] = params
                save("prepare_ok", p, self.limit)

    def flush_reply(self):
        if self.reply:
            save("response", bytes(self.reply), self.limit)
        self.reply = bytearray()

    def close(self):
        self.flush_reply()
        if self.raw_client:
            save("framing", bytes(self.raw_client), self.limit)


def pump(src, dst, feed):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            feed(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, server_port, limit):
    server = socket.create_connection(("127.0.0.1", server_port))
    conn = Conn(limit)
    t = threading.Thread(target=pump, args=(server, client, conn.from_server), daemon=True)
    t.start()
    pump(client, server, conn.from_client)
    t.join()
    conn.close()


def main():
    listen_port, server_port = int(sys.argv[1]), int(sys.argv[2])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--per-target" else 40
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, server_port, limit), daemon=True).start()


if __name__ == "__main__":
    main()
