#!/usr/bin/env python3
"""Times Keylime's own quote check (keylime.tpm.tpm_util.checkquote, from PyPI)
on the quotes `quote_bench` exported, on one core, for comparison with
Sevenfold's verifier. Usage: keylime_checkquote.py DIR
(DIR as given to quote_bench in QUOTE_BENCH_OUT)."""
import os
import sys
import time

from keylime.tpm import tpm_util

d = sys.argv[1]
ak = open(os.path.join(d, "ak.pem"), "rb").read()
quotes = []
i = 0
while os.path.exists(os.path.join(d, f"{i}.msg")):
    read = lambda ext: open(os.path.join(d, f"{i}.{ext}"), "rb").read()
    quotes.append((read("nonce").decode(), read("sig"), read("msg"), read("pcrs")))
    i += 1
for nonce, sig, msg, pcrs in quotes:  # every quote must pass first
    tpm_util.checkquote(ak, nonce, sig, msg, pcrs, "sha256")
done, start = 0, time.process_time()
while time.process_time() - start < 1.0:
    for nonce, sig, msg, pcrs in quotes:
        tpm_util.checkquote(ak, nonce, sig, msg, pcrs, "sha256")
        done += 1
cpu = time.process_time() - start
print(f"keylime checkquote: {cpu * 1e6 / done:.1f} us per quote, {done / cpu:.0f} quotes per CPU-second ({len(quotes)} quotes)")
