{{/*
Names, labels and the daemon configs shared by the templates.
*/}}

{{- define "dfl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RELEASE-dragonfly-lite, trimmed so that "-scheduler-NN" still fits a DNS label. */}}
{{- define "dfl.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dfl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dfl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dfl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "dfl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dfl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the CA, or "" when no CA is configured. */}}
{{- define "dfl.caSecret" -}}
{{- if .Values.ca.existingSecret -}}
{{- .Values.ca.existingSecret -}}
{{- else if and .Values.ca.cert .Values.ca.key -}}
{{- printf "%s-ca" (include "dfl.fullname" .) -}}
{{- else if or .Values.ca.cert .Values.ca.key -}}
{{- fail "ca.cert and ca.key go together: give both PEM texts, or ca.existingSecret" -}}
{{- end -}}
{{- end -}}

{{/* Where the CA Secret is mounted in peer containers. */}}
{{- define "dfl.caDir" -}}/etc/dragonfly-lite/ca{{- end -}}

{{/* Scheduler gRPC addresses: one per replica, by its pod DNS name behind the headless Service. */}}
{{- define "dfl.schedulerAddrs" -}}
{{- $full := include "dfl.fullname" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.scheduler.replicas) -}}
{{- $addrs = append $addrs (printf "%s-scheduler-%d.%s-scheduler.%s.svc.%s:%d" $full $i $full $.Release.Namespace $.Values.clusterDomain (int $.Values.scheduler.ports.grpc)) -}}
{{- end -}}
{{- toJson $addrs -}}
{{- end -}}

{{/*
Refuses user config keys the pod spec depends on. Args: list COMPONENT CONFIG KEYS..., where a
key is "a" or "a.b".
*/}}
{{- define "dfl.refuseKeys" -}}
{{- $component := index . 0 -}}
{{- $config := index . 1 -}}
{{- range $key := slice . 2 -}}
{{- $parts := splitList "." $key -}}
{{- $node := $config -}}
{{- $found := true -}}
{{- range $p := $parts -}}
{{- if and $found (kindIs "map" $node) (hasKey $node $p) -}}
{{- $node = index $node $p -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}
{{- fail (printf "%s.config.%s is set by the chart (it must match the pod spec); use %s.ports, peer.dataDir or ca.* instead" $component $key $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* dfscheduler.yaml: chart keys, then scheduler.config over them. */}}
{{- define "dfl.schedulerConfig" -}}
{{- include "dfl.refuseKeys" (list "scheduler" .Values.scheduler.config "server") -}}
{{- $chart := dict "server" (dict
      "grpc_addr" (printf "0.0.0.0:%d" (int .Values.scheduler.ports.grpc))
      "http_addr" (printf "0.0.0.0:%d" (int .Values.scheduler.ports.admin)))
      "tls" (include "dfl.tls" . | fromYaml) -}}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.scheduler.config)) -}}
{{- end -}}

{{/*
The daemons' `tls:` section. The chart does not yet issue per-pod cluster identities (a
certificate is bound to its host's name, so one Secret cannot serve a DaemonSet), so its
daemons run on the explicit, logged plaintext opt-out; `dfctl status` shows it. To use mutual
TLS, give each daemon `tls: {plaintext: false, ca, cert, key}` in its `config:`.
*/}}
{{- define "dfl.tls" -}}
plaintext: true
{{- end -}}

{{/* dfdaemon.yaml of a seed: chart keys, then seed.config over them. */}}
{{- define "dfl.seedConfig" -}}
{{- include "dfl.refuseKeys" (list "seed" .Values.seed.config "server" "storage.dir" "seed") -}}
{{- $chart := dict
      "seed" true
      "schedulers" (include "dfl.schedulerAddrs" . | fromJsonArray)
      "server" (dict
        "upload_addr" (printf "0.0.0.0:%d" (int .Values.seed.ports.upload))
        "admin_addr" (printf "0.0.0.0:%d" (int .Values.seed.ports.admin)))
      "storage" (dict "dir" "/var/lib/dragonfly")
      "proxy" (dict "enabled" false)
      "tls" (include "dfl.tls" . | fromYaml) -}}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.seed.config)) -}}
{{- end -}}

{{/* dfdaemon.yaml of the node peers: chart keys, then peer.config over them. */}}
{{- define "dfl.peerConfig" -}}
{{- include "dfl.refuseKeys" (list "peer" .Values.peer.config "server" "storage.dir" "seed" "proxy.hijack.ca_cert" "proxy.hijack.ca_key") -}}
{{- $proxy := dict -}}
{{- if include "dfl.caSecret" . -}}
{{- $_ := set $proxy "hijack" (dict
      "ca_cert" (printf "%s/ca.crt" (include "dfl.caDir" .))
      "ca_key" (printf "%s/ca.key" (include "dfl.caDir" .))) -}}
{{- end -}}
{{- $chart := dict
      "seed" false
      "schedulers" (include "dfl.schedulerAddrs" . | fromJsonArray)
      "server" (dict
        "upload_addr" (printf "0.0.0.0:%d" (int .Values.peer.ports.upload))
        "proxy_addr" (printf "0.0.0.0:%d" (int .Values.peer.ports.proxy))
        "admin_addr" (printf "%s:%d" .Values.peer.adminAddress (int .Values.peer.ports.admin)))
      "storage" (dict "dir" "/var/lib/dragonfly")
      "proxy" $proxy
      "tls" (include "dfl.tls" . | fromYaml) -}}
{{- $config := mergeOverwrite $chart (deepCopy .Values.peer.config) -}}
{{- $hijack := dig "proxy" "hijack" "hosts" list $config -}}
{{- if and $hijack (not (include "dfl.caSecret" .)) -}}
{{- fail "peer.config.proxy.hijack.hosts intercepts HTTPS and needs the CA: set ca.cert and ca.key, or ca.existingSecret" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Host directories the peer's init container writes, by runtime. */}}
{{- define "dfl.runtimeHostPaths" -}}
{{- if .Values.runtime.hostPaths -}}
{{- toJson .Values.runtime.hostPaths -}}
{{- else if eq .Values.runtime.kind "containerd" -}}
{{- toJson (list "/etc/containerd") -}}
{{- else if eq .Values.runtime.kind "docker" -}}
{{- toJson (list "/etc/docker" "/etc/systemd/system") -}}
{{- else if eq .Values.runtime.kind "crio" -}}
{{- toJson (list "/etc/containers") -}}
{{- else -}}
{{- fail (printf "runtime.kind '%s' is not one of containerd, docker, crio" .Values.runtime.kind) -}}
{{- end -}}
{{- end -}}

{{/*
The init container's arguments: exactly `dfctl gen-config KIND --root /host --peer
127.0.0.1:PROXY_PORT [--registry R]...`, the contract with dfctl.
*/}}
{{- define "dfl.genConfigArgs" -}}
{{- $args := list "gen-config" .Values.runtime.kind "--root" "/host" "--peer" (printf "127.0.0.1:%d" (int .Values.peer.ports.proxy)) -}}
{{- if ne .Values.runtime.kind "docker" -}}
{{- if not .Values.runtime.registries -}}
{{- fail (printf "runtime.registries is empty: %s needs at least one registry to mirror" .Values.runtime.kind) -}}
{{- end -}}
{{- range $r := .Values.runtime.registries -}}
{{- $args = append $args "--registry" -}}
{{- $args = append $args $r -}}
{{- end -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/*
An init container that fails until scheduler-0 answers /healthz; the kubelet retries it. A
dfdaemon learns the IP it advertises by routing towards its first scheduler when it starts, so
that name must resolve by then, or the peer would advertise 127.0.0.1.
*/}}
{{- define "dfl.waitForScheduler" -}}
{{- $full := include "dfl.fullname" . -}}
- name: wait-for-scheduler
  image: {{ include "dfl.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["dfctl"]
  args: ["status", "--schedulers-only", "--scheduler", {{ printf "%s-scheduler-0.%s-scheduler.%s.svc.%s:%d" $full $full .Release.Namespace .Values.clusterDomain (int .Values.scheduler.ports.admin) | quote }}]
{{- end -}}

{{/* Liveness and readiness probes on the named port "admin". */}}
{{- define "dfl.probes" -}}
{{- $port := "admin" -}}
{{- if hasKey . "probePort" -}}{{- $port = .probePort -}}{{- end -}}
livenessProbe:
  {{- if eq $port "admin" }}
  httpGet:
    path: /healthz
    port: admin
  {{- else }}
  tcpSocket:
    port: {{ $port }}
  {{- end }}
  initialDelaySeconds: {{ .Values.livenessProbe.initialDelaySeconds }}
  periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
  failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
readinessProbe:
  {{- if eq $port "admin" }}
  httpGet:
    path: /healthz
    port: admin
  {{- else }}
  tcpSocket:
    port: {{ $port }}
  {{- end }}
  initialDelaySeconds: {{ .Values.readinessProbe.initialDelaySeconds }}
  periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
  failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
{{- end -}}

{{/* nodeSelector, tolerations and affinity of a component's values. */}}
{{- define "dfl.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
