# fl_file_reader.py: the local app of the "cut the agent link during a remote file read" test
# (faults_link). Opens PATH read-write (a remote fd behind the layer, so each read is a round trip
# to the agent; a read-only open would fetch the whole file at once) and reads it in 4 KiB chunks,
# a short pause between them, until the end or an error. It waits SETTLE seconds after the open
# (argv[2], default 0) so the session is past its first Pings when the test cuts the link.
#   READING BYTES                     once BYTES >= 256 KiB were read
#   RESULT errno=NAME bytes=N t=MONO  a read failed (MONO = time.monotonic())
#   RESULT done bytes=N t=MONO        the whole file was read
import errno
import os
import sys
import time

path = sys.argv[1]
settle = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
try:
    fd = os.open(path, os.O_RDWR)
except OSError as e:
    print("RESULT open-errno=%s bytes=0 t=%.6f" % (errno.errorcode.get(e.errno, str(e.errno)), time.monotonic()), flush=True)
    sys.exit(0)
time.sleep(settle)
got = 0
announced = False
result = "done"
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError as e:
        result = "errno=%s" % errno.errorcode.get(e.errno, str(e.errno))
        break
    if not chunk:
        break
    got += len(chunk)
    if not announced and got >= 256 * 1024:
        announced = True
        print("READING", got, flush=True)
    time.sleep(0.005)
print("RESULT %s bytes=%d t=%.6f" % (result, got, time.monotonic()), flush=True)
