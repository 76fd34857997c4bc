#!/usr/bin/env bash
# End-to-end check of the image, the chart and the operator on a local kind cluster.
#
#   hack/e2e-kind.sh            # needs docker, kind, kubectl and helm on PATH
#
# Creates (or reuses) a kind cluster, builds and loads the image, installs the chart with the
# quick-start Redis, applies examples/jobqueue.yaml, enqueues a burst of jobs and watches
# `kubectl get jq` until replicas rise and the backlog drains, then until they fall back; then
# switches the JobQueue to scaling mode "hpa" and shows the HorizontalPodAutoscaler and the
# external metric it reads. Everything it made is deleted at the end, also on failure.
#
# Safe to run again: an existing cluster of the same name is reused and releases are upgraded.
# Tunables (environment): CLUSTER, NAMESPACE, RELEASE, IMAGE, JOBS, JOB_MS, TIMEOUT_S,
# KEEP_CLUSTER=1 (leave the cluster for debugging), QUEUE_NAME (default: the JobQueue's
# spec.queueName, else its name).
set -Eeuo pipefail

CLUSTER="${CLUSTER:-jobqueue-e2e}"
NAMESPACE="${NAMESPACE:-jobqueue-e2e}"
RELEASE="${RELEASE:-jq}"
IMAGE="${IMAGE:-job-queue-system:e2e}"
JOBS="${JOBS:-400}"
JOB_MS="${JOB_MS:-500}"
TIMEOUT_S="${TIMEOUT_S:-600}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="${ROOT}/examples/jobqueue.yaml"
CONTEXT="kind-${CLUSTER}"
CREATED_CLUSTER=0

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'e2e-kind: FAILED: %s\n' "$*" >&2; exit 1; }
on_error() { printf 'e2e-kind: command failed (exit %s) at line %s: %s\n' "$1" "$2" "$3" >&2; }
trap 'on_error "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

kc() { kubectl --context "${CONTEXT}" "$@"; }

cleanup() {
  local status=$?
  set +e
  if [[ ${status} -ne 0 ]]; then
    log "diagnostics"
    kc -n "${NAMESPACE}" get jq,deploy,pods,hpa,events 2>/dev/null
    kc -n "${NAMESPACE}" logs "deployment/${RELEASE}-jobqueue" --tail=100 2>/dev/null
  fi
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    log "keeping cluster ${CLUSTER} (KEEP_CLUSTER=1)"
  elif [[ ${CREATED_CLUSTER} -eq 1 ]] || kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
    log "deleting cluster ${CLUSTER}"
    kind delete cluster --name "${CLUSTER}"
  fi
  exit "${status}"
}
trap cleanup EXIT

need() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not on PATH"
  done
}

# wait_for DESCRIPTION COMMAND...: run COMMAND every 2 s until it succeeds or TIMEOUT_S passes.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT_S))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT_S}s waiting for ${what}"
    sleep 2
  done
  log "ok: ${what}"
}

jq_field() { kc -n "${NAMESPACE}" get jobqueue "${JQ_NAME}" -o "jsonpath={${1}}"; }

replicas() { local r; r="$(jq_field .status.replicas)"; echo "${r:-0}"; }
backlog() {
  local p f
  p="$(jq_field .status.queue.pending)"
  f="$(jq_field .status.queue.inFlight)"
  echo $((${p:-0} + ${f:-0}))
}
show() { kc -n "${NAMESPACE}" get jobqueue "${JQ_NAME}" --no-headers; }

scaled_above() { local r; show; r="$(replicas)"; ((r > $1)); }
drained() { local b; show; b="$(backlog)"; ((b == 0)); }
scaled_to() { local r; show; r="$(replicas)"; ((r <= $1)); }

enqueue_burst() {
  local password
  password="$(kc -n "${NAMESPACE}" get secret "${RELEASE}-jobqueue-redis" -o 'jsonpath={.data.redis-password}' | base64 -d)"
  kc -n "${NAMESPACE}" delete pod jq-burst --ignore-not-found --wait=true >/dev/null
  # shellcheck disable=SC2016 # $-expressions below are Python, not shell
  kc -n "${NAMESPACE}" run jq-burst --rm -i --restart=Never --image="${IMAGE}" --image-pull-policy=Never \
    --env="REDIS_ADDR=${RELEASE}-jobqueue-redis:6379" --env="REDIS_PASSWORD=${password}" \
    --env="QUEUE_NAME=${QUEUE_NAME}" --env="JOBS=${JOBS}" --env="JOB_MS=${JOB_MS}" \
    --command -- python -c '
import os
from jobqueue import JobSpec, SyncQueue, load_config
n, ms = int(os.environ["JOBS"]), int(os.environ["JOB_MS"])
q = SyncQueue(load_config())
ids = q.enqueue_many(JobSpec(filepath=f"e2e/{i}.bin", filesize=ms * 1024) for i in range(n))
print(f"enqueued {len(ids)} jobs of {ms} ms")
'
}

main() {
  need docker kind kubectl helm base64
  [[ -f "${EXAMPLE}" ]] || die "${EXAMPLE} is missing"

  if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
    log "reusing kind cluster ${CLUSTER}"
  else
    log "creating kind cluster ${CLUSTER}"
    kind create cluster --name "${CLUSTER}" --wait 120s
    CREATED_CLUSTER=1
  fi

  log "building ${IMAGE}"
  docker build -t "${IMAGE}" "${ROOT}"
  kind load docker-image "${IMAGE}" --name "${CLUSTER}"

  log "installing the chart (release ${RELEASE}, namespace ${NAMESPACE})"
  helm --kube-context "${CONTEXT}" upgrade --install "${RELEASE}" "${ROOT}/charts/jobqueue" \
    --namespace "${NAMESPACE}" --create-namespace --wait --timeout 5m \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --set redis.enabled=true
  kc -n "${NAMESPACE}" rollout status "deployment/${RELEASE}-jobqueue" --timeout=180s
  wait_for "the external metrics APIService to be available" \
    kc wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=5s

  log "applying ${EXAMPLE}"
  JQ_NAME="$(kc -n "${NAMESPACE}" apply -f "${EXAMPLE}" -o name | head -n1)"
  JQ_NAME="${JQ_NAME##*/}"
  if [[ -z "${QUEUE_NAME:-}" ]]; then
    QUEUE_NAME="$(jq_field .spec.queueName)"
    QUEUE_NAME="${QUEUE_NAME:-${JQ_NAME}}"
  fi
  kc -n "${NAMESPACE}" get jq
  wait_for "JobQueue ${JQ_NAME} to be Ready" \
    kc -n "${NAMESPACE}" wait --for=condition=Ready "jobqueue/${JQ_NAME}" --timeout=5s
  local min_replicas
  min_replicas="$(jq_field .spec.scaling.minReplicas)"
  min_replicas="${min_replicas:-0}"

  log "builtin scaling: a burst of ${JOBS} jobs"
  enqueue_burst
  wait_for "replicas to rise above ${min_replicas}" scaled_above "${min_replicas}"
  wait_for "the backlog to drain" drained
  wait_for "replicas to fall back to ${min_replicas}" scaled_to "${min_replicas}"
  kc -n "${NAMESPACE}" describe jq "${JQ_NAME}" | tail -n 20

  log "hpa scaling"
  kc -n "${NAMESPACE}" patch jobqueue "${JQ_NAME}" --type=merge \
    -p '{"spec":{"scaling":{"mode":"hpa","minReplicas":1}}}'
  wait_for "the HorizontalPodAutoscaler of ${JQ_NAME}" kc -n "${NAMESPACE}" get hpa "${JQ_NAME}"
  enqueue_burst
  wait_for "the HPA to scale ${JQ_NAME} above 1" scaled_above 1
  kc -n "${NAMESPACE}" get hpa
  kc get --raw "/apis/external.metrics.k8s.io/v1beta1/namespaces/${NAMESPACE}/jobqueue_backlog?labelSelector=jobqueue.dev%2Fname%3D${JQ_NAME}"
  echo
  wait_for "the backlog to drain" drained

  log "deleting"
  kc -n "${NAMESPACE}" delete jobqueue "${JQ_NAME}" --wait=true --timeout=120s
  helm --kube-context "${CONTEXT}" uninstall "${RELEASE}" --namespace "${NAMESPACE}" --wait
  kc delete namespace "${NAMESPACE}" --wait=true --timeout=120s
  log "e2e-kind: PASSED"
}

main "$@"
