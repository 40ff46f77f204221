# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dfctl_global_optspecs
    string join \n token-file= h/help V/version
end

function __fish_dfctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dfctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dfctl_using_subcommand
    set -l cmd (__fish_dfctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dfctl -n "__fish_dfctl_needs_command" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_needs_command" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_needs_command" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "init" -d 'Write a cluster profile directory: CA, daemon configs, runtime configs per node kind, and a README of what to run next'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "cert" -d 'Create a CA, issue and inspect certificates, trust the CA on a node'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "gen-config" -d 'Write the node config that sends a container runtime\'s pulls through the node\'s dfdaemon, or the daemons\' configs with every default (--dry-run shows a diff)'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "up" -d 'Start a local cluster (schedulers, seed peers, peers) as separate processes on 127.0.0.1'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "down" -d 'Stop the local cluster started by `dfctl up`'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "status" -d 'Check the health of schedulers and peers; exits 1 when any is unhealthy'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "get" -d 'Download a URL through a peer (P2P), to a file or stdout'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "task" -d 'Inspect tasks (objects being distributed) on the schedulers'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "logs" -d 'Show or follow the daemons\' logs, filtered by task or time'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "deploy" -d 'Install the daemons on a node'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "disable" -d 'Switch P2P off on this node: revert the runtime config dfctl wrote (or, --soft, only make the local peer pass requests through) and record why'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "enable" -d 'Switch P2P back on after `dfctl disable`'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "preheat" -d 'Warm peers with an image or files before a rollout (scheduler jobs API); `ls`, `status`'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "top" -d 'Live view of the P2P network: tasks, each task\'s DAG and piece bitmaps, hosts, where a task is cached, and the daemons\' logs'
complete -c dfctl -n "__fish_dfctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l dir -d 'The profile directory to write' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l scheduler -d 'Scheduler gRPC address the peers use (repeatable) [default: 127.0.0.1:8002]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l registry -d 'Registry to mirror through the peers (repeatable) [default: docker.io]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l peer -d 'Where runtimes on a node reach its dfdaemon (the dfdaemon\'s proxy address) [default: 127.0.0.1:4001]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l key-type -d 'Key type of a new CA' -r -f -a "ecdsa-p256\t'ECDSA on P-256 with SHA-256 (the default, as step and cfssl)'
ecdsa-p384\t'ECDSA on P-384 with SHA-384'
rsa2048\t'RSA 2048 with SHA-256, for legacy clients'
rsa3072\t'RSA 3072 with SHA-256'"
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l no-prompt -d 'Never prompt, even on a terminal'
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -l force -d 'Write into DIR even when it holds something other than a profile'
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -f -a "ca" -d 'Create a CA (CA:TRUE, path length 0) in DIR/ca.crt and DIR/ca.key (0400)'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -f -a "issue" -d 'Issue a certificate signed by the CA for the given SANs'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -f -a "inspect" -d 'Show subject, SANs, issuer, validity and days left of every certificate in FILE; exits 1 when one is expired or not yet valid'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -f -a "trust" -d 'Print (or with --apply perform) the steps that make this node trust the CA: the system store, Docker\'s certs.d and containerd\'s hosts.toml `ca`'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and not __fish_seen_subcommand_from ca issue inspect trust help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l dir -d 'Directory for ca.crt and ca.key (created 0700 if missing)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l cn -d 'Common name [default: "dragonfly-lite CA (<hostname>)"]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l key-type -r -f -a "ecdsa-p256\t'ECDSA on P-256 with SHA-256 (the default, as step and cfssl)'
ecdsa-p384\t'ECDSA on P-384 with SHA-384'
rsa2048\t'RSA 2048 with SHA-256, for legacy clients'
rsa3072\t'RSA 3072 with SHA-256'"
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l days -d 'Validity in days' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l permit -d 'Name constraints (repeatable): the CA may sign only for this host name (and its subdomains) or IP address; e.g. the registries it intercepts. None: any name' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -l force -d 'Replace an existing CA (every certificate it signed stops being trusted with it)'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from ca" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l san -d 'Subject alternative name (repeatable): DNS:name, IP:addr, URI:dragonfly://ROLE/NAME (a daemon\'s cluster identity; with --usage server --usage client), or bare (IP if it parses)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l ca-dir -d 'Directory holding the CA\'s ca.crt and ca.key' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l out-dir -d 'Output directory [default: the CA directory]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l name -d 'File name stem: writes NAME.crt and NAME.key [default: the first SAN]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l cn -d 'Common name [default: the first SAN]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l usage -d 'What the certificate is for (repeatable)' -r -f -a "server\t'TLS server (serverAuth)'
client\t'TLS client, e.g. mTLS between daemons (clientAuth)'"
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l key-type -r -f -a "ecdsa-p256\t'ECDSA on P-256 with SHA-256 (the default, as step and cfssl)'
ecdsa-p384\t'ECDSA on P-384 with SHA-384'
rsa2048\t'RSA 2048 with SHA-256, for legacy clients'
rsa3072\t'RSA 3072 with SHA-256'"
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l days -d 'Validity in days (short-lived by default: rotate, don\'t renew by hand)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -l force -d 'Replace existing NAME.crt / NAME.key'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from issue" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from inspect" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from inspect" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from inspect" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -l ca -d 'The CA certificate to trust' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -l registry -d 'A registry (HOST[:PORT]) whose certificate the CA signed (repeatable): its Docker certs.d/<registry>/ca.crt and containerd certs.d/<registry>/ CA file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -l root -d 'With --apply: write under this filesystem root; system-store updates only run for /' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -l apply -d 'Perform the steps instead of printing them'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from trust" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "ca" -d 'Create a CA (CA:TRUE, path length 0) in DIR/ca.crt and DIR/ca.key (0400)'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "issue" -d 'Issue a certificate signed by the CA for the given SANs'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Show subject, SANs, issuer, validity and days left of every certificate in FILE; exits 1 when one is expired or not yet valid'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "trust" -d 'Print (or with --apply perform) the steps that make this node trust the CA: the system store, Docker\'s certs.d and containerd\'s hosts.toml `ca`'
complete -c dfctl -n "__fish_dfctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "docker" -d 'Docker: HTTP(S)_PROXY drop-in for docker.service, optionally a Docker Hub `registry-mirrors` entry in daemon.json'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "containerd" -d 'containerd: registry config_path in config.toml and certs.d/<registry>/hosts.toml files'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "crio" -d 'CRI-O: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "podman" -d 'podman: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "daemons" -d 'dfdaemon.yaml and dfscheduler.yaml under /etc/dragonfly with every default, commented'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "helm" -d 'A commented values.yaml for the project\'s Helm chart (`dfctl deploy helm -f FILE`)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and not __fish_seen_subcommand_from docker containerd crio podman daemons helm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l root -d 'Write under this filesystem root instead of / (e.g. /host in an init container)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l peer -d 'The node\'s dfdaemon proxy/mirror address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l no-proxy -d 'Extra NO_PROXY entries (comma-separated or repeated: cluster CIDRs, internal domains); localhost, 127.0.0.0/8 and ::1 are always there' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l force -d 'Replace drop-ins and daemon configs that dfctl did not write (or that were edited since it did); a backup is kept'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l registry-mirror -d 'Also add the dfdaemon to `registry-mirrors` in /etc/docker/daemon.json (Docker Hub only; other keys are kept)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -l restart -d 'Run `systemctl daemon-reload` and `systemctl restart docker` when something changed'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from docker" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l root -d 'Write under this filesystem root instead of / (e.g. /host in an init container)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l peer -d 'The node\'s dfdaemon proxy/mirror address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l registry -d 'A registry to mirror (repeatable): HOST[:PORT], or http://HOST[:PORT] for a registry served over plain HTTP. One certs.d/<registry>/hosts.toml each' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l config -d 'containerd\'s config file (a path on the node, under --root)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l force -d 'Replace drop-ins and daemon configs that dfctl did not write (or that were edited since it did); a backup is kept'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -l default-mirror -d 'Also write certs.d/_default/hosts.toml, the catch-all for every other registry'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from containerd" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l root -d 'Write under this filesystem root instead of / (e.g. /host in an init container)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l peer -d 'The node\'s dfdaemon proxy/mirror address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l registry -d 'A registry to mirror (repeatable): HOST[:PORT], or http://HOST[:PORT] for a registry served over plain HTTP. One [[registry]] with the dfdaemon as [[registry.mirror]] each' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -l force -d 'Replace drop-ins and daemon configs that dfctl did not write (or that were edited since it did); a backup is kept'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from crio" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l root -d 'Write under this filesystem root instead of / (e.g. /host in an init container)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l peer -d 'The node\'s dfdaemon proxy/mirror address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l registry -d 'A registry to mirror (repeatable): HOST[:PORT], or http://HOST[:PORT] for a registry served over plain HTTP. One [[registry]] with the dfdaemon as [[registry.mirror]] each' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -l force -d 'Replace drop-ins and daemon configs that dfctl did not write (or that were edited since it did); a backup is kept'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from podman" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -l root -d 'Write under this filesystem root instead of / (e.g. /host in an init container)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -l force -d 'Replace drop-ins and daemon configs that dfctl did not write (or that were edited since it did); a backup is kept'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from daemons" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -s O -l out -d 'The values file to write' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l image -d 'Image holding dfscheduler, dfdaemon and dfctl' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l image-tag -d 'Image tag [default: the chart\'s appVersion]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l pull-policy -r -f -a "always\t''
if-not-present\t''
never\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l runtime -d 'The nodes\' container runtime, which the peers\' init container configures' -r -f -a "containerd\t''
docker\t''
crio\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l registry -d 'A registry pulled through the peers (HOST or HOST:PORT); repeatable [default: docker.io]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l schedulers -d 'Scheduler replicas' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l seeds -d 'Seed peer replicas (0: none)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l seed-cache-size -d 'Each seed\'s cache volume (a Kubernetes quantity)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l seed-storage-class -d 'StorageClass of the seeds\' volumes [default: the cluster\'s default]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l proxy-port -d 'The peers\' proxy port on every node' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l ca-cert -d 'CA certificate (PEM) the peers intercept registry TLS with; needs --ca-key' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l ca-key -d 'The CA\'s private key (PEM)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l ca-secret -d 'An existing Secret holding the CA (keys ca.crt, ca.key) instead of --ca-cert/--ca-key' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l identity -d 'Where the daemons\' cluster identities come from: cert-manager (--issuer), the Secrets dragonfly-lite-{scheduler,seed,peer}-identity that `dfctl init` says how to make, or the plaintext opt-out (no authentication between daemons)' -r -f -a "cert-manager\t''
existing-secrets\t''
plaintext\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l issuer -d 'The cert-manager issuer holding the cluster identity CA' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l dry-run -d 'Print a unified diff of what would change and write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l force -d 'Replace a file with other content (a backup is kept)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l cluster-issuer -d '--issuer is a ClusterIssuer'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -l identity-per-role -d 'One cert-manager Certificate per role, shared by its pods, instead of one per pod from cert-manager\'s csi-driver (weaker: any peer can claim another peer\'s host ID)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from helm" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "docker" -d 'Docker: HTTP(S)_PROXY drop-in for docker.service, optionally a Docker Hub `registry-mirrors` entry in daemon.json'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "containerd" -d 'containerd: registry config_path in config.toml and certs.d/<registry>/hosts.toml files'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "crio" -d 'CRI-O: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "podman" -d 'podman: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "daemons" -d 'dfdaemon.yaml and dfscheduler.yaml under /etc/dragonfly with every default, commented'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "helm" -d 'A commented values.yaml for the project\'s Helm chart (`dfctl deploy helm -f FILE`)'
complete -c dfctl -n "__fish_dfctl_using_subcommand gen-config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l peers -d 'Number of normal peers' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l seed-peers -d 'Number of seed peers (they fetch from the origin first)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l schedulers -d 'Number of schedulers' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l upload-rate-limit -d 'Upload rate limit of every peer, bytes per second (e.g. 50MiB); 0 = unlimited' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l capacity -d 'Storage capacity of every peer (e.g. 2GiB); 0 = the filesystem\'s size' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l intercept -d 'Intercept HTTPS to this registry (repeatable): every peer presents a certificate for it signed by the cluster\'s CA (DIR/pki/ca.crt, created on first use), so clients that trust the CA and use a peer as HTTPS_PROXY (docker, skopeo) pull its blobs P2P' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l mirror -d 'The registry mirror\'s default: where `/v2/` requests that name no registry go (podman\'s and CRI-O\'s registries.conf mirrors), e.g. https://registry.example:5000' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l origin-ca -d 'A PEM CA the peers trust for origins besides the system store (repeatable), e.g. a private registry\'s' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l bin-dir -d 'Directory to take dfscheduler and dfdaemon from, before the one holding dfctl and PATH' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand up" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand down" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand down" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand down" -l purge -d 'Also remove DIR with all configs, data and logs'
complete -c dfctl -n "__fish_dfctl_using_subcommand down" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand down" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -l scheduler -d 'A scheduler\'s admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -l peer -d 'A peer\'s admin address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -l schedulers-only -d 'Check only the schedulers (no peers, none discovered): a readiness check that must not fail because some other node\'s peer is down'
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -s O -l output-file -d 'Write to FILE instead of stdout (\'-\' is stdout)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -l peer -d 'Admin address of the peer to download through [default: the first peer of the local cluster, else 127.0.0.1:4002]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -l digest -d 'Expected digest of the whole object; the peer refuses content that does not match' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -s H -l header -d 'Header sent to the origin, e.g. \'Authorization: Bearer x\'; repeatable' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand get" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -f -a "locate" -d 'Show which peers hold a task\'s pieces'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -f -a "ls" -d 'List the tasks the schedulers know'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and not __fish_seen_subcommand_from locate ls help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -l scheduler -d 'A scheduler\'s admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from locate" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -l scheduler -d 'A scheduler\'s admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "locate" -d 'Show which peers hold a task\'s pieces'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List the tasks the schedulers know'
complete -c dfctl -n "__fish_dfctl_using_subcommand task; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l node -d 'Only this daemon: its name in the local cluster (`peer-0`), its admin address, or its IP' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l task -d 'Only records about this task' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l since -d 'Only records from this recent period (`30s`, `10m`, `2h`)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l tail -d 'Recent records to show per daemon before following' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l scheduler -d 'A scheduler\'s admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l peer -d 'A peer\'s admin address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -s o -l output -d '`table` prints one readable line per record; `json` the records as NDJSON, each with its daemon under `node`' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -s f -l follow -d 'Keep printing new records until interrupted'
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -l local -d 'Read the local cluster\'s log files instead of asking the daemons'
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand logs" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -f -a "systemd" -d 'Install a daemon as a systemd service: unit file, config, then enable and start it'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -f -a "helm" -d 'Install or upgrade the cluster on Kubernetes: `helm upgrade --install` with dfctl\'s chart; prints the exact command instead when helm is missing or with --dry-run'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and not __fish_seen_subcommand_from systemd helm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l role -d 'Which daemon this node runs' -r -f -a "scheduler\t''
seed\t''
peer\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l root -d 'Write under this directory instead of `/` (image builds, tests); never runs systemctl' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l config -d 'The daemon config to install (`dfctl gen-config daemons` writes one)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l bin-dir -d 'Where the binaries are installed on the node' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -l dry-run -d 'Show what would change; write nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from systemd" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -s f -l values -d 'A values file to install with (e.g. from `dfctl gen-config helm`) instead of the flags' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l image -d 'Image holding dfscheduler, dfdaemon and dfctl' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l image-tag -d 'Image tag [default: the chart\'s appVersion]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l pull-policy -r -f -a "always\t''
if-not-present\t''
never\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l runtime -d 'The nodes\' container runtime, which the peers\' init container configures' -r -f -a "containerd\t''
docker\t''
crio\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l registry -d 'A registry pulled through the peers (HOST or HOST:PORT); repeatable [default: docker.io]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l schedulers -d 'Scheduler replicas' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l seeds -d 'Seed peer replicas (0: none)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l seed-cache-size -d 'Each seed\'s cache volume (a Kubernetes quantity)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l seed-storage-class -d 'StorageClass of the seeds\' volumes [default: the cluster\'s default]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l proxy-port -d 'The peers\' proxy port on every node' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l ca-cert -d 'CA certificate (PEM) the peers intercept registry TLS with; needs --ca-key' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l ca-key -d 'The CA\'s private key (PEM)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l ca-secret -d 'An existing Secret holding the CA (keys ca.crt, ca.key) instead of --ca-cert/--ca-key' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l identity -d 'Where the daemons\' cluster identities come from: cert-manager (--issuer), the Secrets dragonfly-lite-{scheduler,seed,peer}-identity that `dfctl init` says how to make, or the plaintext opt-out (no authentication between daemons)' -r -f -a "cert-manager\t''
existing-secrets\t''
plaintext\t''"
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l issuer -d 'The cert-manager issuer holding the cluster identity CA' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l release -d 'Helm release name' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -s n -l namespace -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l kube-context -d 'kubeconfig context [default: the current one]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l workdir -d 'Where the chart and values are written for helm [default: the dfctl state directory]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l helm -d 'The helm binary' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l cluster-issuer -d '--issuer is a ClusterIssuer'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l identity-per-role -d 'One cert-manager Certificate per role, shared by its pods, instead of one per pod from cert-manager\'s csi-driver (weaker: any peer can claim another peer\'s host ID)'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -l dry-run -d 'Print the values and the command; write and run nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from helm" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from help" -f -a "systemd" -d 'Install a daemon as a systemd service: unit file, config, then enable and start it'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from help" -f -a "helm" -d 'Install or upgrade the cluster on Kubernetes: `helm upgrade --install` with dfctl\'s chart; prints the exact command instead when helm is missing or with --dry-run'
complete -c dfctl -n "__fish_dfctl_using_subcommand deploy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l reason -d 'Why (shown by `dfctl status` and recorded in the marker)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l root -d 'Work under this filesystem root instead of / (never restarts anything there)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l peer-admin -d 'The local peer\'s admin address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l soft -d 'Keep the runtime config; switch the local peer to pass-through only'
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l dry-run -d 'Say what would change; change nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -l no-restart -d 'Print the runtime restart/reload step instead of running it'
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand disable" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -l root -d 'Work under this filesystem root instead of / (never restarts anything there)' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -l peer-admin -d 'The local peer\'s admin address' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -l dry-run -d 'Say what would change; change nothing'
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -l no-restart -d 'Print the runtime restart/reload step instead of running it'
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -s h -l help -d 'Print help'
complete -c dfctl -n "__fish_dfctl_using_subcommand enable" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l platform -d 'Platform to take from a multi-platform image: os/arch[/variant], or all [default: linux/amd64]' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l scope -d 'Which peers get the blobs [default: single-seed, or all-peers with --peers]' -r -f -a "single-seed\t'The one seed peer the scheduler\'s hash ring picks for each blob'
all-seeds\t'Every seed peer'
all-peers\t'Every peer and seed peer (or those named by --peers)'"
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l peers -d 'Only these peers (host ids, as `dfctl status` shows them), comma-separated' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l username -d 'Registry user name (with --password)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l password -d 'Registry password (with --username)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l docker-config -d 'Docker config.json to take registry credentials from [default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json, when present; credential helpers are not consulted]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l scheduler -d 'The scheduler\'s admin HTTP address (HOST:PORT) [default: the first scheduler of the local cluster]. Jobs live on the scheduler that took them' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l token -d 'Bearer token of the jobs API (the scheduler\'s `jobs.token`; not needed on loopback when the scheduler has none)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l plain-http -d 'Talk to image registries over plain HTTP (image references only)'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -l wait -d 'Wait until every job ends, with progress; exit 1 if any failed'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -a "ls" -d 'List the scheduler\'s preheat jobs, newest first'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -a "status" -d 'Show one job: each blob, and how far each chosen peer got'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and not __fish_seen_subcommand_from ls status help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -l scheduler -d 'The scheduler\'s admin HTTP address (HOST:PORT) [default: the first scheduler of the local cluster]. Jobs live on the scheduler that took them' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -l token -d 'Bearer token of the jobs API (the scheduler\'s `jobs.token`; not needed on loopback when the scheduler has none)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -l scheduler -d 'The scheduler\'s admin HTTP address (HOST:PORT) [default: the first scheduler of the local cluster]. Jobs live on the scheduler that took them' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -l token -d 'Bearer token of the jobs API (the scheduler\'s `jobs.token`; not needed on loopback when the scheduler has none)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List the scheduler\'s preheat jobs, newest first'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show one job: each blob, and how far each chosen peer got'
complete -c dfctl -n "__fish_dfctl_using_subcommand preheat; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -l dir -d 'Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else ~/.local/state/dragonfly-lite/cluster]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -l scheduler -d 'A scheduler\'s admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -l task -d 'Select this task at start (id or URL): its DAG and piece bitmaps are fetched (and, with --once, included as `task`)' -r
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'One JSON document for scripts'"
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -l token-file -d 'File holding the daemons\' admin token [default: DIR/admin-token of the local cluster, else /etc/dragonfly/pki/admin-token]' -r -F
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -l once -d 'Print the current view once and exit, instead of the live screen'
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfctl -n "__fish_dfctl_using_subcommand top" -s V -l version -d 'Print version'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "init" -d 'Write a cluster profile directory: CA, daemon configs, runtime configs per node kind, and a README of what to run next'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "cert" -d 'Create a CA, issue and inspect certificates, trust the CA on a node'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "gen-config" -d 'Write the node config that sends a container runtime\'s pulls through the node\'s dfdaemon, or the daemons\' configs with every default (--dry-run shows a diff)'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "up" -d 'Start a local cluster (schedulers, seed peers, peers) as separate processes on 127.0.0.1'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "down" -d 'Stop the local cluster started by `dfctl up`'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "status" -d 'Check the health of schedulers and peers; exits 1 when any is unhealthy'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "get" -d 'Download a URL through a peer (P2P), to a file or stdout'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "task" -d 'Inspect tasks (objects being distributed) on the schedulers'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "logs" -d 'Show or follow the daemons\' logs, filtered by task or time'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "deploy" -d 'Install the daemons on a node'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "disable" -d 'Switch P2P off on this node: revert the runtime config dfctl wrote (or, --soft, only make the local peer pass requests through) and record why'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "enable" -d 'Switch P2P back on after `dfctl disable`'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "preheat" -d 'Warm peers with an image or files before a rollout (scheduler jobs API); `ls`, `status`'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "top" -d 'Live view of the P2P network: tasks, each task\'s DAG and piece bitmaps, hosts, where a task is cached, and the daemons\' logs'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and not __fish_seen_subcommand_from init cert gen-config up down status get task logs deploy disable enable preheat top help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "ca" -d 'Create a CA (CA:TRUE, path length 0) in DIR/ca.crt and DIR/ca.key (0400)'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "issue" -d 'Issue a certificate signed by the CA for the given SANs'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "inspect" -d 'Show subject, SANs, issuer, validity and days left of every certificate in FILE; exits 1 when one is expired or not yet valid'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "trust" -d 'Print (or with --apply perform) the steps that make this node trust the CA: the system store, Docker\'s certs.d and containerd\'s hosts.toml `ca`'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "docker" -d 'Docker: HTTP(S)_PROXY drop-in for docker.service, optionally a Docker Hub `registry-mirrors` entry in daemon.json'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "containerd" -d 'containerd: registry config_path in config.toml and certs.d/<registry>/hosts.toml files'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "crio" -d 'CRI-O: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "podman" -d 'podman: a registries.conf.d drop-in with the dfdaemon as mirror'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "daemons" -d 'dfdaemon.yaml and dfscheduler.yaml under /etc/dragonfly with every default, commented'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from gen-config" -f -a "helm" -d 'A commented values.yaml for the project\'s Helm chart (`dfctl deploy helm -f FILE`)'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "locate" -d 'Show which peers hold a task\'s pieces'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from task" -f -a "ls" -d 'List the tasks the schedulers know'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from deploy" -f -a "systemd" -d 'Install a daemon as a systemd service: unit file, config, then enable and start it'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from deploy" -f -a "helm" -d 'Install or upgrade the cluster on Kubernetes: `helm upgrade --install` with dfctl\'s chart; prints the exact command instead when helm is missing or with --dry-run'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from preheat" -f -a "ls" -d 'List the scheduler\'s preheat jobs, newest first'
complete -c dfctl -n "__fish_dfctl_using_subcommand help; and __fish_seen_subcommand_from preheat" -f -a "status" -d 'Show one job: each blob, and how far each chosen peer got'
