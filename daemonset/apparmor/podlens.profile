# AppArmor profile for the podlens agent: what a compromised agent still
# could not do on the node.
#
# The agent runs as root with hostPID, so without a profile of its own a
# bug in it would be root's reach over every process of the node. This
# profile keeps it to what it does: read /proc, /sys, its image and the log
# files; talk to the CRI socket and the API server; serve HTTPS; write its
# audit log and /tmp; signal only with SIGKILL and SIGTERM (kill-and-watch).
# It never writes a process's memory, environment or root filesystem
# through /proc/<pid>/{mem,environ,root}, never reads the first two, never
# attaches to a process, never mounts.
#
# Load it on every node (it is not in the image: profiles live in the
# node's kernel), then point the pod at it (daemonset.yaml shows how):
#
#   apparmor_parser -r -W daemonset/apparmor/podlens.profile
#
# Check its syntax without loading it: apparmor_parser -Q -K <this file>.
# Capabilities the pod does not have stay unavailable whatever is allowed
# here: "capability kill" matters only with components/kill-and-watch,
# "capability sys_ptrace" only with components/ptrace.

abi <abi/3.0>,

include <tunables/global>

profile podlens flags=(attach_disconnected,mediate_deleted) {
  include <abstractions/base>

  # The HTTPS port, the API server, DNS; the CRI socket.
  network inet stream,
  network inet6 stream,
  network inet dgram,
  network inet6 dgram,
  network unix stream,

  capability kill,
  capability sys_ptrace,

  # Reads: the image's Python, /proc and /sys, the log files. Libraries and
  # the interpreter are mapped and executed from the image only.
  / r,
  /** r,
  /{usr,lib,lib64,opt}/** mr,
  /usr/local/bin/python* ix,
  /usr/bin/python* ix,
  /opt/podlens/bin/* ix,

  # Writes: only the two writable mounts.
  /tmp/ r,
  /tmp/** rwkl,
  /var/log/podlens/ r,
  /var/log/podlens/** rwk,

  # connect() on a unix socket is a write to it: the runtimes' sockets only
  # (containerd, CRI-O, cri-dockerd, k3s/RKE2, k0s, MicroK8s).
  /run/containerd/containerd.sock rw,
  /run/crio/crio.sock rw,
  /run/cri-dockerd.sock rw,
  /run/k3s/containerd/containerd.sock rw,
  /run/k0s/containerd.sock rw,
  /var/snap/microk8s/common/run/containerd.sock rw,

  # kill-and-watch sends SIGKILL or SIGTERM, nothing else; the runtime and
  # kubelet stop the agent with signals of their own.
  signal (send) set=(kill, term),
  signal (receive),

  # readlink /proc/<pid>/ns/* passes a ptrace *read* check; attaching never.
  ptrace (read),
  deny ptrace (trace),

  # Other processes' memory, environment and root filesystem: never written
  # (a write there is code or files injected into another container); memory
  # and environment never read either (they hold secrets; the agent reads
  # neither).
  deny @{PROC}/{*,*/task/*}/{mem,environ,root}{,/**} wl,
  deny @{PROC}/{*,*/task/*}/{mem,environ} r,
  # Nor read through another process's root (a pod's service account token,
  # its mounted Secrets): the agent reads pods through the runtime and /proc.
  deny @{PROC}/{*,*/task/*}/root/** r,
  # The kernel's knobs and memory.
  deny @{PROC}/sys/** wl,
  deny @{PROC}/sysrq-trigger rwl,
  deny @{PROC}/kcore rwl,
  deny /sys/** wl,

  deny mount,
  deny umount,
  deny pivot_root,
}
