#!/usr/bin/env bash
# Run generate.py with one old release: run.sh RELEASE BACKEND [OUT_ROOT]
#   RELEASE: 0.2.0 0.3.3 1.0.5 1.0.6 1.0.7 1.0.8 1.1.2 1.2.2 2.0.8 2.2.4 tf-keras-2.21
#   BACKEND: theano | tensorflow
# The environments are those of README.md, under $OLDKERAS (default
# /work/oldkeras); the fixtures go to OUT_ROOT/keras-RELEASE-BACKEND
# (default: tests/fixtures/real of this checkout). GENERATOR=zoo.py runs
# zoo.py (one model per layer family) instead of generate.py.
set -euo pipefail
release=$1
backend=$2
here=$(cd "$(dirname "$0")" && pwd)
out_root=${3:-$here/../../tests/fixtures/real}
OLDKERAS=${OLDKERAS:-/work/oldkeras}
K=$OLDKERAS/k/$release
case "$release-$backend" in
  0.*-theano)          py=$OLDKERAS/py36/bin/python; pp=$K:$OLDKERAS/th082; cache=theano-0.8.2 ;;
  1.0.*-tensorflow|1.1.*-tensorflow)  # TensorFlow 0.12.1 (tf.pack), Python 2.7
                       py=$OLDKERAS/py27/bin/python; pp=$K; cache=none ;;
  1.*-theano|2.*-theano) py=$OLDKERAS/py36/bin/python; pp=$K; cache=theano-1.0.5 ;;
  1.*-tensorflow)      py=$OLDKERAS/py36tf101/bin/python; pp=$K; cache=none ;;
  2.*-tensorflow)      py=$OLDKERAS/py36tf114/bin/python; pp=$K; cache=none ;;
  tf-keras-*-tensorflow) py=$OLDKERAS/py311tfk/bin/python; pp=; cache=none ;;
  *) echo "unknown release/backend $release $backend" >&2; exit 2 ;;
esac
name=keras-$release-$backend
[[ $release == tf-keras-* ]] && name=$release-$backend
mkdir -p "$OLDKERAS/cache"
[[ -n ${ZOO_ONLY:-} ]] || rm -rf "${out_root:?}/$name"  # ZOO_ONLY: merged (zoo.py)
PYTHONPATH=$pp "$py" "$here/${GENERATOR:-generate.py}" --release "$release" --backend "$backend" \
  --out "$out_root/$name" --theano-compiledir "$OLDKERAS/cache/$cache"
