"""A stand-in JIT: one page of executable anonymous memory holding `jmp .`, spun in by a
thread, and the perf map a JIT writes for it (`/tmp/perf-PID.map`), owned by the uid given as
the first argument. Prints the pid and the code's address once the map is written."""
import ctypes, mmap, os, sys

owner = int(sys.argv[1])
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(b"\xeb\xfe")  # jmp .
addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
path = f"/tmp/perf-{os.getpid()}.map"
with open(path, "w") as f:
    f.write(f"{addr:x} 2 jit_spin_loop\n")
os.chown(path, owner, owner)
print(os.getpid(), f"{addr:x}", flush=True)
ctypes.CFUNCTYPE(None)(addr)()
