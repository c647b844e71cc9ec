#!/usr/bin/env python3
"""RSS of the daemon: idle, after a 100k-flag file, after going back to a small file, during and after a
flood of 4,000 idle connections closed by the client (BENCHMARKS.md, "Memory after a burst").
Usage: scripts/rss-after-burst.py BINARY [ENV=VALUE ...]; uses ports 18013-18016."""
import json, os, socket, subprocess, sys, time, tempfile

binary = sys.argv[1]
env = dict(os.environ)
for kv in sys.argv[2:]:
    k, v = kv.split('=', 1); env[k] = v
d = tempfile.mkdtemp()
small = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples', 'flags.json')).read()
big = {"flags": {f"flag-{i}": {"state": "ENABLED", "variants": {"on": True, "off": False},
        "defaultVariant": "on", "targeting": {"if": [{"in": [{"var": "email"}, [f"u{i}@x.com", "a@b.c"]]}, "off", "on"]},
        "metadata": {"owner": f"team-{i % 50}"}} for i in range(100_000)}}
open(f'{d}/big.json', 'w').write(json.dumps(big))
path = f'{d}/flags.json'
open(path, 'w').write(small)
def swap(src):
    tmp = f'{d}/.tmp.json'
    with open(src) as f, open(tmp, 'w') as g: g.write(f.read())
    os.rename(tmp, path)
open(f'{d}/small.json', 'w').write(small)
ports = [18013 + i for i in range(4)]
p = subprocess.Popen([binary, 'start', '-f', f'file:{path}', '-p', str(ports[0]), '-m', str(ports[1]), '-g', str(ports[2]), '-r', str(ports[3])],
                     env=env, stdout=subprocess.DEVNULL, stderr=open(f'{d}/log', 'w'))
def rss():
    for line in open(f'/proc/{p.pid}/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
time.sleep(2)
r0 = rss()
swap(f'{d}/big.json'); time.sleep(8)
r1 = rss()
swap(f'{d}/small.json'); time.sleep(4)
r2 = rss()
socks = []
for _ in range(4000):
    s = socket.create_connection(('127.0.0.1', ports[0])); socks.append(s)
time.sleep(2)
r_flood = rss()
for s in socks: s.close()
time.sleep(3)
r3 = rss()
p.terminate(); p.wait()
print(f"idle {r0:.1f} MB; 100k-flag file {r1:.1f} MB; back to small {r2:.1f} MB; 4000 connections {r_flood:.1f} MB; after they close {r3:.1f} MB")
