# shellcheck shell=bash
# The inference backend's images (hack/versions.env), built offline:
#   $MLSERVER_IMAGE  MLServer and its scikit-learn runtime, the KServe V2 server of kubernetes mode
#   $MODELS_IMAGE_REPOSITORY:<digest>   the city's model store (install.sh's) under /models on busybox: the
#                    stack's Job copies it into the model store's volume and the operator's init container
#                    copies its catalog (cityhub:backends.inference.modelsImage; backend.py) Sourced by hack/images.sh
# (its helpers: log, fail, digest, fresh, passwd_files, deb_versions, deb_unpack, operator_base, $OCI, $VENV,
# $PYTHON, $WORK, $IMAGES, $CACHE); not run alone.
#
#   base      the operator image's layer ($WORK/base, operator_base): Debian's python3.11, shared, not rebuilt
#   mlserver  mlserver, mlserver-sklearn and scikit-learn from PyPI (wheels only), every dependency at the
#             version of the venv component_types/inference/install.sh made, which the local backend runs
#             (its pip freeze as constraints; MLSERVER_PINS where the image must differ), in
#             /usr/lib/python3/dist-packages without test suites;
#             Debian's libstdc++6 (the manylinux wheels of scikit-learn, scipy, pandas and grpcio link it,
#             none ships it); /usr/local/bin/mlserver on the image's python
#
# Contract: the one of docker.io/seldonio/mlserver:1.7.1-sklearn as driver/manifests.py runs it. The
# Deployment sets no command, only MLSERVER_HTTP_PORT=8080 and MLSERVER_MODEL_{NAME,IMPLEMENTATION,URI,VERSION}
# with the store mounted at naming.MODELS_MOUNT (/mnt/models): Cmd `mlserver start /mnt/models` (upstream's
# CMD, there wrapped in bash to unpack a conda environment tarball first, which this image cannot: no shell,
# no conda) finds no model-settings.json there and serves the model the env describes.
#   user 1000: the pods run as 1000 whatever the image says (runAsUser: manifests.MLSERVER_UID, upstream's
#   USER), so /etc/passwd names 1000 (home /tmp). MLServer creates .metrics and .envs in its working
#   directory: MLSERVER_METRICS_DIR/ENVIRONMENTS_DIR put them in /tmp, so /opt/mlserver (the workdir, as
#   upstream; on sys.path for custom runtimes) stays root-owned.

MLSERVER_USER=1000
MLSERVER_VENV=$CACHE/venvs/mlserver
MLSERVER_SITE=/usr/lib/python3/dist-packages
MLSERVER_MODELS=$CACHE/inference/models
# Where the image departs from the venv: uvloop 0.22 made get_event_loop() raise outside a running loop (as
# Python 3.14 does), which kills MLServer 1.7.1's parallel worker at start (worker.py _ignore_signals), so
# no model loads; the venv never starts one (local.py: parallel_workers 0), the Deployment's pods do.
MLSERVER_PINS=(uvloop==0.21.0)

mlserver_layer() {  # $1: the MLServer version
  local dir=$WORK/mlserver want constraints=$WORK/mlserver-constraints.txt
  [ -x "$MLSERVER_VENV/bin/mlserver" ] || { log "no $MLSERVER_VENV (bash component_types/inference/install.sh)"; return 1; }
  local pin skip=(-e '^-e ' -e ' @ ')
  for pin in "${MLSERVER_PINS[@]}"; do skip+=(-e "^${pin%%==*}=="); done
  { "$MLSERVER_VENV/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable 2>/dev/null \
    | grep -v "${skip[@]}"; printf '%s\n' "${MLSERVER_PINS[@]}"; } >"$constraints"
  grep -qx "mlserver==$1" "$constraints" || {
    log "$MLSERVER_VENV has $(grep '^mlserver==' "$constraints"), the image tag says $1: re-run install.sh"
    return 1
  }
  deb_versions libstdc++6 || return 1
  want="$DEB_WANT $(digest <"$constraints") $(digest <"${BASH_SOURCE[0]}")"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$want" ] && return 0
  log "mlserver layer: mlserver $1, $(grep '^scikit-learn==' "$constraints") (constraints: $MLSERVER_VENV)"
  deb_unpack "$dir" "${DEB_VERSIONS[@]}" || return 1
  local rootfs=$dir/rootfs target=$dir/rootfs$MLSERVER_SITE
  # Wheels only: nothing compiled against this machine's libraries. The venv's pip: its dependency check
  # then looks at the venv the constraints came from, not at the project's (other protobuf pins).
  "$MLSERVER_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile --only-binary=:all: \
    --target "$target" "mlserver==$1" "mlserver-sklearn==$1" scikit-learn -c "$constraints" >&2 || return 1
  rm -rf "${target:?}/bin"  # console scripts with the host's interpreter path; mlserver's is written below
  # Test suites (a third of pandas, scipy, sklearn, gevent): nothing imports them when serving.
  find "$target" -type d -name tests -prune -exec rm -rf {} + || return 1
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/opt/mlserver" "$rootfs/mnt/models" || return 1
  # The console script of mlserver's entry_points.txt (mlserver = mlserver.cli:main), guarded as pip writes
  # it: the parallel worker is spawned, and spawn re-imports this file as __mp_main__.
  printf '#!/usr/bin/python3.11\nimport sys\nfrom mlserver.cli import main\nif __name__ == "__main__":\n    sys.exit(main())\n' \
    >"$rootfs/usr/local/bin/mlserver" && chmod 0755 "$rootfs/usr/local/bin/mlserver" || return 1
  passwd_files "$rootfs" "$MLSERVER_USER"
  "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$rootfs" -p / "$target" >&2 || return 1
  echo "$want" >"$dir/.inputs"
}

# In the assembled root, as the image's user: the image's python imports the server and the runtime; then
# `mlserver start /mnt/models` with the Deployment's env (manifests.deployment) on a copy of install.sh's
# model store answers /v2/health/ready, the readiness probe's path and one inference, on loopback ports.
mlserver_smoke_test() {
  local merged=$WORK/mlserver-smoke out rc=0 pid ready=0 http grpc metrics name=ie-smoke base
  [ "$(id -u)" = 0 ] || { log "  (not root: skipping the chroot test)"; return 0; }
  [ -f "$MLSERVER_MODELS/traffic-flow/1/model.joblib" ] || { log "no traffic-flow model (install.sh)"; return 1; }
  if mountpoint -q "$merged/proc"; then umount "$merged/proc" || return 1; fi
  rm -rf "$merged" && mkdir -p "$merged" || return 1
  # -f: the layer's /etc/passwd and /etc/group replace the base's, as in the image.
  cp -al "$WORK/base/rootfs/." "$merged/" && cp -alf "$WORK/mlserver/rootfs/." "$merged/" || return 1
  cp -r "$MLSERVER_MODELS/." "$merged/mnt/models/" || return 1
  # What a container runtime provides: grpc's abseil aborts without /dev/urandom, multiprocessing's
  # semaphores (the parallel worker, joblib) live in /dev/shm. Device nodes and a directory made in the tree,
  # never the host's /dev mounted in (removing the tree then removes only these). And a new proc.
  mkdir -p "$merged/dev" "$merged/proc" && mkdir -m 1777 "$merged/dev/shm" && mknod -m 666 "$merged/dev/null" c 1 3 \
    && mknod -m 666 "$merged/dev/random" c 1 8 && mknod -m 666 "$merged/dev/urandom" c 1 9 || return 1
  mount -t proc proc "$merged/proc" || return 1
  out=$(chroot --userspec=$MLSERVER_USER:$MLSERVER_USER "$merged" /usr/bin/python3 -c '
import mlserver, mlserver_sklearn, sklearn, os
print("uid", os.getuid(), "mlserver", mlserver.__version__, "sklearn", sklearn.__version__)' 2>&1) || rc=1
  log "  $out"
  read -r http grpc metrics < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  base=http://127.0.0.1:$http/v2
  if [ $rc = 0 ]; then
    # The image's env and workdir, the Deployment's MLSERVER_* (its one parallel worker too), loopback ports.
    env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin MLSERVER_METRICS_DIR=/tmp/.metrics \
      MLSERVER_ENVIRONMENTS_DIR=/tmp/.envs PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
      MLSERVER_HOST=127.0.0.1 MLSERVER_HTTP_PORT="$http" MLSERVER_GRPC_PORT="$grpc" \
      MLSERVER_METRICS_PORT="$metrics" MLSERVER_MODEL_NAME=$name \
      MLSERVER_MODEL_IMPLEMENTATION=mlserver_sklearn.SKLearnModel MLSERVER_MODEL_VERSION=1 \
      MLSERVER_MODEL_URI=/mnt/models/traffic-flow/1/model.joblib \
      "$(command -v chroot)" --userspec=$MLSERVER_USER:$MLSERVER_USER "$merged" /usr/bin/python3 -c \
      'import os; os.chdir("/opt/mlserver"); os.execv("/usr/local/bin/mlserver", ["mlserver", "start", "/mnt/models"])' \
      >"$WORK/mlserver-smoke.log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do
      curl -fsS "$base/health/ready" >/dev/null 2>&1 && { ready=1; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if [ $ready = 1 ]; then
      out=$(curl -fsS "$base/models/$name/ready" -o /dev/null -w 'model ready %{http_code}; ' \
        && curl -fsS "$base/models/$name/infer" -H 'Content-Type: application/json' \
          -d '{"inputs":[{"name":"features","datatype":"FP32","shape":[1,4],"data":[8,1,0,0]}]}') || rc=1
      log "  mlserver start: /v2/health/ready 200 on :$http; $out"
    else
      log "  mlserver start: not ready; last lines of $WORK/mlserver-smoke.log:"
      tail -n 15 "$WORK/mlserver-smoke.log" >&2
      rc=1
    fi
    kill "$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    # Any process still rooted in the tree (a worker outliving a killed server) was started here.
    local proc
    for proc in /proc/[0-9]*; do
      [ "$(readlink "$proc/root" 2>/dev/null)" = "$merged" ] && kill -9 "${proc#/proc/}" 2>/dev/null
    done
    sleep 1
  fi
  # Never remove the tree while anything is mounted in it.
  umount "$merged/proc" || { log "cannot unmount $merged/proc; left in place"; return 1; }
  if grep -q " $merged/" /proc/mounts; then log "mounts left under $merged; left in place"; return 1; fi
  rm -rf "$merged"
  return $rc
}

build_mlserver() {
  local t0=$SECONDS want tag=${MLSERVER_IMAGE##*:}
  operator_base || { fail "mlserver image: base (the operator's Debian python3.11)"; return 1; }
  mlserver_layer "${tag%%-*}" || { fail "mlserver image: mlserver layer (pip install from PyPI)"; return 1; }
  want="$MLSERVER_IMAGE $(cat "$WORK/base/.inputs" "$WORK/mlserver/.inputs" "$ROOT/hack/oci_image.py" \
    "${BASH_SOURCE[0]}" | digest)"
  fresh "$IMAGES/mlserver.oci.tar" "$IMAGES/.mlserver.version" "$want" && return 0
  mlserver_smoke_test || { fail "mlserver image: mlserver in the image's root"; return 1; }
  log "mlserver image: $MLSERVER_IMAGE"
  "${OCI[@]}" --rootfs "$WORK/base/rootfs" --rootfs "$WORK/mlserver/rootfs" --name "$MLSERVER_IMAGE" \
    --cmd=mlserver --cmd=start --cmd=/mnt/models --user "$MLSERVER_USER:$MLSERVER_USER" \
    --env MLSERVER_METRICS_DIR=/tmp/.metrics --env MLSERVER_ENVIRONMENTS_DIR=/tmp/.envs \
    --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 --workdir /opt/mlserver \
    --out "$IMAGES/mlserver.oci.tar" >&2 || { fail "mlserver image: pack"; return 1; }
  echo "$want" >"$IMAGES/.mlserver.version"
  log "  mlserver image built in $((SECONDS - t0))s"
}

# The model store image: Debian's busybox-static (sh and cp for the Job and the operator's init container) and
# the store under /models, readable by all (the Job writes the copy as the model servers' user). Tagged with the
# store's content digest: the same store gives the same reference, a changed one a new Job.
build_models() {
  local t0=$SECONDS dir=$WORK/models-base store=$WORK/models-store want tag
  [ -f "$MLSERVER_MODELS/traffic-flow/1/model.joblib" ] || { fail "models image: no model store (install.sh)"; return 1; }
  tag=$(tree_digest "$MLSERVER_MODELS" . | cut -c1-12)
  deb_versions busybox-static || { fail "models image: busybox-static"; return 1; }
  if [ "$(cat "$dir/.inputs" 2>/dev/null)" != "$DEB_WANT" ]; then
    deb_unpack "$dir" "${DEB_VERSIONS[@]}" && busybox_links "$dir/rootfs" \
      || { fail "models image: busybox layer"; return 1; }
    passwd_files "$dir/rootfs" "$MLSERVER_USER"
    echo "$DEB_WANT" >"$dir/.inputs"
  fi
  want="$MODELS_IMAGE_REPOSITORY:$tag $(cat "$dir/.inputs" "$ROOT/hack/oci_image.py" "${BASH_SOURCE[0]}" | digest)"
  fresh "$IMAGES/models.oci.tar" "$IMAGES/.models.version" "$want" && return 0
  log "models image: $MODELS_IMAGE_REPOSITORY:$tag ($(du -sh "$MLSERVER_MODELS" | cut -f1) of models)"
  rm -rf "$store" && mkdir -p "$store/rootfs/models" && cp -R "$MLSERVER_MODELS/." "$store/rootfs/models/" \
    && chmod -R a+rX "$store/rootfs/models" || { fail "models image: copy the store"; return 1; }
  "${OCI[@]}" --rootfs "$dir/rootfs" --rootfs "$store/rootfs" --name "$MODELS_IMAGE_REPOSITORY:$tag" \
    --cmd=ls --cmd=-R --cmd=/models --user "$MLSERVER_USER:$MLSERVER_USER" --workdir /models \
    --out "$IMAGES/models.oci.tar" >&2 || { fail "models image: pack"; return 1; }
  echo "$want" >"$IMAGES/.models.version"
  log "  models image built in $((SECONDS - t0))s"
}
