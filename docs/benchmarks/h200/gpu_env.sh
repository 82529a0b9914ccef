# Sourced on the H200 machine (see README.md here): puts the carried snakemake (installed under
# /tmp/site), onnxruntime-gpu (under /tmp/site-ort, ahead of the machine's CPU-only onnxruntime)
# and this package on the path.
export PYTHONPATH=$PWD/workflow:/tmp/site-ort:/tmp/site:${PYTHONPATH:-}
export PATH=/tmp/site/bin:$PATH
export PYTHONUNBUFFERED=1
mkdir -p /tmp/site/bin
printf '#!/bin/sh\nexec python3 -m inferbench "$@"\n' > /tmp/site/bin/inferbench
chmod +x /tmp/site/bin/inferbench
