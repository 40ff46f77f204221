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
Refuses user config keys the pod spec depends on. Args: list COMPONENT CONFIG HINT KEYS..., where
a key is "a" or "a.b" and HINT says which values to set instead.
*/}}
{{- define "dfl.refuseKeys" -}}
{{- $component := index . 0 -}}
{{- $config := index . 1 -}}
{{- $hint := index . 2 -}}
{{- range $key := slice . 3 -}}
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
{{- fail (printf "%s.config.%s is set by the chart (%s)" $component $key $hint) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dfl.podSpecHint" -}}it must match the pod spec; use the ports, peer.dataDir or ca.* instead{{- end -}}
{{- define "dfl.identityHint" -}}it must match the daemon's certificate; use identity.mode and identity.* instead{{- end -}}

{{/*
Refuses the keys every daemon's identity depends on: `tls` always, `host.hostname` of seeds
and peers unless on the plaintext opt-out (the name must be the certificate's). Args: list
COMPONENT CONFIG ROOT.
*/}}
{{- define "dfl.refuseIdentityKeys" -}}
{{- $component := index . 0 -}}
{{- $config := index . 1 -}}
{{- $root := index . 2 -}}
{{- include "dfl.refuseKeys" (list $component $config (include "dfl.identityHint" $root) "tls") -}}
{{- if and (ne $component "scheduler") (ne (include "dfl.identityMode" $root) "plaintext") -}}
{{- include "dfl.refuseKeys" (list $component $config (include "dfl.identityHint" $root) "host.hostname") -}}
{{- end -}}
{{- end -}}

{{/* dfscheduler.yaml: chart keys, then scheduler.config over them. */}}
{{- define "dfl.schedulerConfig" -}}
{{- include "dfl.refuseKeys" (list "scheduler" .Values.scheduler.config (include "dfl.podSpecHint" .) "server") -}}
{{- include "dfl.refuseIdentityKeys" (list "scheduler" .Values.scheduler.config .) -}}
{{- $chart := dict "server" (dict
      "grpc_addr" (printf "0.0.0.0:%d" (int .Values.scheduler.ports.grpc))
      "http_addr" (printf "0.0.0.0:%d" (int .Values.scheduler.ports.admin)))
      "tls" (include "dfl.tls" . | fromYaml) -}}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.scheduler.config)) -}}
{{- end -}}

{{/*
The cluster identity (README "Cluster identity"). Every daemon link is mutual TLS with a
certificate whose one URI SAN is dragonfly://<scheduler|seed|peer>/<name>, `name` the daemon's
hostname. Modes:
- cert-manager, perPod (default): cert-manager's csi-driver issues each pod its own certificate,
  dragonfly://ROLE/${POD_NAME}, and seeds and peers run with `--hostname $(POD_NAME)`: a pod
  holds only its own name.
- cert-manager, perPod false: one Certificate (and Secret) per role, shared by its pods, named
  identity.names.ROLE, which is then the daemons' host.hostname.
- existingSecrets: the same per-role layout from Secrets the operator made (dfctl init).
- plaintext: the explicit, logged opt-out.
*/}}
{{- define "dfl.identityMode" -}}
{{- $mode := .Values.identity.mode -}}
{{- if not (has $mode (list "cert-manager" "existingSecrets" "plaintext")) -}}
{{- fail (printf "identity.mode '%s' is not one of cert-manager, existingSecrets, plaintext" $mode) -}}
{{- end -}}
{{- if and (eq $mode "cert-manager") (not .Values.identity.issuerRef.name) -}}
{{- fail "identity.issuerRef.name is empty: identity.mode cert-manager needs the cert-manager Issuer (or ClusterIssuer) holding the cluster identity CA; or set identity.mode existingSecrets or plaintext" -}}
{{- end -}}
{{- if eq $mode "existingSecrets" -}}
{{- range $role := list "scheduler" "seed" "peer" -}}
{{- if and (not (index $.Values.identity.existingSecrets $role)) (or (ne $role "seed") (gt (int $.Values.seed.replicas) 0)) -}}
{{- fail (printf "identity.existingSecrets.%s is empty: identity.mode existingSecrets needs one Secret per role holding ca.crt, tls.crt and tls.key (dfctl init makes them; its README has the kubectl commands)" $role) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/* "true" when each pod gets its own certificate from cert-manager's csi-driver, else "". */}}
{{- define "dfl.perPod" -}}
{{- if and (eq (include "dfl.identityMode" .) "cert-manager") .Values.identity.perPod -}}true{{- end -}}
{{- end -}}

{{/* Where every daemon's identity is mounted: df_core::config::tls::NODE_DIR. */}}
{{- define "dfl.identityDir" -}}/etc/dragonfly/tls{{- end -}}

{{/*
The name a role's shared certificate carries and its daemons announce (host.hostname), or ""
when the name is the pod's own (perPod) or there is no identity (plaintext). Args: dict "root"
$ "role" ROLE.
*/}}
{{- define "dfl.sharedName" -}}
{{- $mode := include "dfl.identityMode" .root -}}
{{- if and (ne $mode "plaintext") (not (include "dfl.perPod" .root)) -}}
{{- if eq .role "scheduler" -}}
{{- printf "%s-scheduler" (include "dfl.fullname" .root) -}}
{{- else -}}
{{- index .root.Values.identity.names .role -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding a role's identity (shared modes). Args: dict "root" $ "role" ROLE. */}}
{{- define "dfl.identitySecret" -}}
{{- if eq (include "dfl.identityMode" .root) "existingSecrets" -}}
{{- index .root.Values.identity.existingSecrets .role -}}
{{- else -}}
{{- printf "%s-%s-identity" (include "dfl.fullname" .root) .role -}}
{{- end -}}
{{- end -}}

{{/* The key usages every daemon certificate needs: it serves and it dials. */}}
{{- define "dfl.identityUsages" -}}
{{- toJson (list "digital signature" "key encipherment" "server auth" "client auth") -}}
{{- end -}}

{{/*
The pod volume holding a role's identity, or nothing on the plaintext opt-out. Args: dict
"root" $ "role" ROLE "fsGroup" GID-or-"" (the non-root daemons read the key through their
group).
*/}}
{{- define "dfl.identityVolume" -}}
{{- $root := .root -}}
{{- if ne (include "dfl.identityMode" $root) "plaintext" }}
- name: identity
  {{- if include "dfl.perPod" $root }}
  # cert-manager's csi-driver issues this pod its own certificate (renewed in place; the
  # daemon reloads it): the URI SAN names the pod, which the daemon uses as its hostname.
  csi:
    driver: csi.cert-manager.io
    readOnly: true
    volumeAttributes:
      csi.cert-manager.io/issuer-name: {{ $root.Values.identity.issuerRef.name | quote }}
      csi.cert-manager.io/issuer-kind: {{ $root.Values.identity.issuerRef.kind | quote }}
      csi.cert-manager.io/issuer-group: {{ $root.Values.identity.issuerRef.group | quote }}
      csi.cert-manager.io/uri-sans: {{ printf "dragonfly://%s/${POD_NAME}" .role | quote }}
      csi.cert-manager.io/key-usages: {{ include "dfl.identityUsages" $root | fromJsonArray | join "," | quote }}
      {{- if $root.Values.identity.duration }}
      csi.cert-manager.io/duration: {{ $root.Values.identity.duration | quote }}
      {{- end }}
      {{- if .fsGroup }}
      csi.cert-manager.io/fs-group: {{ .fsGroup | quote }}
      {{- end }}
  {{- else }}
  secret:
    secretName: {{ include "dfl.identitySecret" (dict "root" $root "role" .role) }}
    # The key stays readable by the daemon's user (and group) only.
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
  {{- end }}
{{- end }}
{{- end -}}

{{/* The container's mount of the identity volume, or nothing on the plaintext opt-out. */}}
{{- define "dfl.identityMount" -}}
{{- if ne (include "dfl.identityMode" .) "plaintext" }}
- name: identity
  mountPath: {{ include "dfl.identityDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A dfdaemon's command: with per-pod identities, `--hostname $(POD_NAME)` (the kubelet expands
it from the POD_NAME variable, "dfl.podNameEnv") so the host's name is its certificate's.
*/}}
{{- define "dfl.dfdaemonCommand" -}}
{{- $cmd := list "dfdaemon" "--config" "/etc/dragonfly-lite/dfdaemon.yaml" -}}
{{- if include "dfl.perPod" . -}}
{{- $cmd = concat $cmd (list "--hostname" "$(POD_NAME)") -}}
{{- end -}}
{{- toJson $cmd -}}
{{- end -}}

{{- define "dfl.podNameEnv" -}}
{{- if include "dfl.perPod" . }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
{{- end }}
{{- end -}}

{{/* The daemons' `tls:` section: the identity's files, or the opt-out. */}}
{{- define "dfl.tls" -}}
{{- if eq (include "dfl.identityMode" .) "plaintext" -}}
plaintext: true
{{- else -}}
ca: {{ include "dfl.identityDir" . }}/ca.crt
cert: {{ include "dfl.identityDir" . }}/tls.crt
key: {{ include "dfl.identityDir" . }}/tls.key
{{- end -}}
{{- end -}}

{{/* dfdaemon.yaml of a seed: chart keys, then seed.config over them. */}}
{{- define "dfl.seedConfig" -}}
{{- include "dfl.refuseKeys" (list "seed" .Values.seed.config (include "dfl.podSpecHint" .) "server" "storage.dir" "seed") -}}
{{- include "dfl.refuseIdentityKeys" (list "seed" .Values.seed.config .) -}}
{{- $chart := dict
      "seed" true
      "schedulers" (include "dfl.schedulerAddrs" . | fromJsonArray)
      "server" (dict
        "upload_addr" (printf "0.0.0.0:%d" (int .Values.seed.ports.upload))
        "admin_addr" (printf "0.0.0.0:%d" (int .Values.seed.ports.admin)))
      "storage" (dict "dir" "/var/lib/dragonfly")
      "proxy" (dict "enabled" false)
      "tls" (include "dfl.tls" . | fromYaml) -}}
{{- with include "dfl.sharedName" (dict "root" . "role" "seed") -}}
{{- $_ := set $chart "host" (dict "hostname" .) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.seed.config)) -}}
{{- end -}}

{{/* dfdaemon.yaml of the node peers: chart keys, then peer.config over them. */}}
{{- define "dfl.peerConfig" -}}
{{- include "dfl.refuseKeys" (list "peer" .Values.peer.config (include "dfl.podSpecHint" .) "server" "storage.dir" "seed" "proxy.hijack.ca_cert" "proxy.hijack.ca_key") -}}
{{- include "dfl.refuseIdentityKeys" (list "peer" .Values.peer.config .) -}}
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
{{- with include "dfl.sharedName" (dict "root" . "role" "peer") -}}
{{- $_ := set $chart "host" (dict "hostname" .) -}}
{{- end -}}
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
