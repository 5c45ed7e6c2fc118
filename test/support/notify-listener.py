#!/usr/bin/env python3
# notify-listener.py <socket-path> <max-messages> <seconds>: a stand-in for systemd's
# notification socket in tests. Binds a unix datagram socket, prints "ready", then one JSON
# line per datagram received ({"t": seconds since start, "msg": text}), and exits after
# max-messages datagrams or when the time is up. Bounded in count and time.
import json, os, socket, sys, time
path, maxn, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
start = time.monotonic()
print("ready", flush=True)
n = 0
while n < maxn:
    left = secs - (time.monotonic() - start)
    if left <= 0:
        break
    s.settimeout(left)
    try:
        data = s.recv(4096)
    except socket.timeout:
        break
    n += 1
    print(json.dumps({"t": round(time.monotonic() - start, 3), "msg": data.decode()}), flush=True)
s.close()
os.unlink(path)
