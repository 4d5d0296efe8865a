"""``kubectl describe pod`` text, read back into Pod and Event documents.

The layout is kubectl's ``describePod`` (k8s.io/kubectl pkg/describe): one
``Label:<tab>value`` per line at the left margin, aligned by tabwriter, with
the sections indented two spaces per level:

* the pod: ``Name``, ``Namespace``, ``Priority``, ``Service Account``,
  ``Node`` (``name/hostIP`` or ``<none>``), ``Start Time`` (RFC1123Z),
  ``Labels``, ``Annotations``, ``Status`` (the phase, or ``Terminating
  (lasts 5m)``; ``Terminating (expires <time>)`` in old releases),
  ``Termination Grace Period``, ``Reason``, ``Message``, ``IP``, ``IPs``,
  ``Controlled By`` (``Created By`` in old releases);
* ``Init Containers:`` / ``Containers:`` / ``Ephemeral Containers:``, each
  container under its name: ``Container ID``, ``Image``, ``Image ID``,
  ``Port(s)``, ``Command``/``Args`` (one argument per line), ``State`` and
  ``Last State`` with ``Reason``, ``Message``, ``Exit Code``, ``Signal``,
  ``Started``, ``Finished``; ``Ready``, ``Restart Count``, ``Limits``,
  ``Requests``, ``Liveness``/``Readiness``/``Startup``, ``Environment``,
  ``Mounts``;
* ``Conditions:`` (a Type / Status table), ``Volumes:``, ``QoS Class``;
* ``Events:``: ``Type Reason Age From Message`` (``Age`` as ``3m (x5 over
  10m)``), or in old releases ``FirstSeen LastSeen Count From
  SubObjectPath Type Reason Message``.

What describe never prints is missing from the result and listed as such:
the UID, creationTimestamp, the pod's restartPolicy, a waiting state's
message, conditions' reasons and times, ``started``. Ages are relative to
when describe ran, which is taken to be ``now``.

Part of the wiring layer: imports ``_text``, ``_types`` and the domain only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent.cli.pastes._text import (
    Column,
    columns_of,
    parse_age,
    parse_age_cell,
    parse_go_time,
    parse_source,
    split_row,
)
from agent.cli.pastes._types import EventDoc, PodDoc
from agent.domain.kubemodel import GAP_PHASE, GAP_RESTART_POLICY, GAP_SIDECARS
from agent.domain.times import iso

__all__ = ["looks_like_describe", "parse_describe"]

_TOP = re.compile(r"^(?P<key>[A-Z][A-Za-z0-9 ./()-]*?):(?:[ \t]+(?P<value>.*?))?\s*$")
_FIELD = re.compile(r"^(?P<key>[A-Z][A-Za-z ()/-]*?):(?:[ \t]+(?P<value>.*?))?\s*$")
_CONTAINER_NAME = re.compile(r"^(?P<name>[^\s:]+):\s*$")
_SIGNATURE = re.compile(r"^Name:[ \t]+\S", re.M)
_POD_SECTIONS = re.compile(r"^(?:Containers|Init Containers):", re.M)
_OTHER_DESCRIBE = re.compile(
    r"^(?:Namespace|Node|Status|Start Time|Labels|Annotations|Selector|Replicas|Type):", re.M
)
_TERMINATING_LASTS = re.compile(r"Terminating \(lasts (?P<age>[^)]+)\)")
_TERMINATING_EXPIRES = re.compile(r"Terminating \(expires (?P<time>[^)]+)\)")
_MOUNT = re.compile(r"^(?P<path>\S+) from (?P<vol>\S+) \((?P<flags>[^)]*)\)")
_ENV = re.compile(r"^(?P<name>[A-Za-z_][\w.-]*):(?:[ \t]+(?P<value>.*))?$")
_SECRET_KEY = re.compile(r"<set to the key '(?P<key>[^']*)' in secret '(?P<name>[^']*)'>")
_CONFIG_KEY = re.compile(r"<set to the key '(?P<key>[^']*)' of config map '(?P<name>[^']*)'>")
_FIELD_REF = re.compile(r"\((?P<api>[\w./]+):(?P<path>[^)]+)\)\s*$")
_ENV_FROM = re.compile(
    r"^(?P<name>\S+)\s+(?P<kind>ConfigMap|Secret)(?: with prefix '(?P<prefix>[^']*)')?"
)
_PROBE = re.compile(
    r"^(?P<what>.*?)\s*delay=(?P<delay>\d+)s timeout=(?P<timeout>\d+)s period=(?P<period>\d+)s"
    r" #success=(?P<success>\d+) #failure=(?P<failure>\d+)"
)
_EVENT_TYPES = frozenset({"Normal", "Warning"})
# How much of one value a pattern reads; describe's values are short.
_VALUE_CHARS = 1024
_NONE = frozenset({"", "<none>", "<nil>", "<unset>"})

_DESCRIBE_MISSING = (
    "metadata.uid",
    "metadata.creationTimestamp",
    GAP_RESTART_POLICY,
    "status.containerStatuses[].state.waiting.message",
    "status.containerStatuses[].started",
    "status.conditions[].reason",
    "status.conditions[].lastTransitionTime",
)


def looks_like_describe(text: str) -> bool:
    """Whether ``text`` reads as ``kubectl describe`` output (of any kind of object)."""
    return bool(_SIGNATURE.search(text)) and bool(_OTHER_DESCRIBE.search(text))


def is_pod_describe(text: str) -> bool:
    """Whether describe ``text`` is about pods (it has a Containers section)."""
    return bool(_POD_SECTIONS.search(text))


# --------------------------------------------------------------------------
# Lines into a tree
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    key: str
    value: str
    children: list[str] = field(default_factory=list)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blocks(text: str) -> Iterator[list[str]]:
    """One list of lines per described pod, each starting at its ``Name:`` line."""
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip().expandtabs(8)
        if line.startswith("Name:") and _SIGNATURE.match(line):
            if current is not None:
                yield current
            current = [line]
        elif current is not None:
            current.append(line)
    if current is not None:
        yield current


def _top_nodes(lines: list[str]) -> list[_Node]:
    nodes: list[_Node] = []
    for line in lines:
        if line and not line[0].isspace():
            m = _TOP.match(line)
            if m is not None:
                nodes.append(_Node(m.group("key"), m.group("value") or ""))
                continue
        if nodes:
            nodes[-1].children.append(line)
    return nodes


def _fields(lines: list[str]) -> list[_Node]:
    """Children lines grouped by the ``Key: value`` lines at their shallowest indent."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return []
    level = min(_indent(ln) for ln in body)
    nodes: list[_Node] = []
    for line in body:
        text = line.strip()
        if _indent(line) == level:
            m = _FIELD.match(text)
            if m is not None:
                nodes.append(_Node(m.group("key"), m.group("value") or ""))
                continue
        if nodes:
            nodes[-1].children.append(line)
    return nodes


def _named_groups(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``name:`` lines at the shallowest indent (containers, volumes) and the lines under each."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return []
    level = min(_indent(ln) for ln in body)
    groups: list[tuple[str, list[str]]] = []
    for line in body:
        if _indent(line) == level:
            m = _CONTAINER_NAME.match(line.strip())
            if m is not None:
                groups.append((m.group("name"), []))
                continue
        if groups:
            groups[-1][1].append(line)
    return groups


def _value(v: str) -> str | None:
    v = v.strip()
    return None if v in _NONE else v


# --------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Reader:
    """Per pod: the anchor time for ages, and notes on what was guessed."""

    now: datetime
    notes: list[str] = field(default_factory=list)

    def time(self, text: str) -> str | None:
        """A describe time as RFC 3339, noting a zone that had to be guessed."""
        parsed, note = parse_go_time(text)
        if note and note not in self.notes:
            self.notes.append(note)
        return iso(parsed) if parsed is not None else None

    def ago(self, delta: timedelta | None) -> str | None:
        """The time ``delta`` before now, as RFC 3339."""
        return iso(self.now - delta) if delta is not None else None


def _state(node: _Node | None, r: _Reader) -> dict[str, Any]:
    if node is None:
        return {}
    kind = node.value.strip().lower()
    details: dict[str, str] = {}
    last_key = ""
    for line in node.children:
        m = _FIELD.match(line.strip())
        if m is not None and m.group("key") in (
            "Reason",
            "Message",
            "Exit Code",
            "Signal",
            "Started",
            "Finished",
        ):
            last_key = m.group("key")
            details[last_key] = m.group("value") or ""
        elif last_key == "Message":
            # A termination message runs over several lines.
            details["Message"] += "\n" + line.strip()
    if kind == "running":
        return {"running": {"startedAt": r.time(details.get("Started", ""))}}
    if kind == "terminated":
        term: dict[str, Any] = {
            "reason": details.get("Reason"),
            "message": details.get("Message"),
            "exitCode": _int(details.get("Exit Code")) or 0,
            "startedAt": r.time(details.get("Started", "")),
            "finishedAt": r.time(details.get("Finished", "")),
        }
        if (signal := _int(details.get("Signal"))) is not None:
            term["signal"] = signal
        return {"terminated": {k: v for k, v in term.items() if v is not None}}
    waiting = {"reason": details["Reason"]} if details.get("Reason") else {}
    return {"waiting": waiting}


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _probe(text: str) -> dict[str, Any] | None:
    m = _PROBE.match(text.strip()[:_VALUE_CHARS])
    if m is None:
        return None
    what = m.group("what")
    probe: dict[str, Any] = {
        "initialDelaySeconds": int(m.group("delay")),
        "timeoutSeconds": int(m.group("timeout")),
        "periodSeconds": int(m.group("period")),
        "successThreshold": int(m.group("success")),
        "failureThreshold": int(m.group("failure")),
    }
    if what.startswith("http-get "):
        url = what.removeprefix("http-get ").strip()
        hm = re.match(r"(?P<scheme>\w+)://(?P<host>[^:/]*):?(?P<port>[^/]*)(?P<path>/.*)?", url)
        if hm is not None:
            port: int | str = _int(hm.group("port")) or hm.group("port")
            probe["httpGet"] = {
                "scheme": hm.group("scheme").upper(),
                "host": hm.group("host") or None,
                "port": port,
                "path": hm.group("path") or "/",
            }
    elif what.startswith("tcp-socket "):
        host, _, port_text = what.removeprefix("tcp-socket ").strip().rpartition(":")
        probe["tcpSocket"] = {"host": host or None, "port": _int(port_text) or port_text}
    elif what.startswith("exec "):
        inner = what.removeprefix("exec ").strip().removeprefix("[").removesuffix("]")
        probe["exec"] = {"command": inner.split()}
    elif what.startswith("grpc "):
        gm = re.match(r"grpc \S*?:(?P<port>\d+)(?:\s+(?P<svc>\S+))?", what)
        if gm is not None:
            probe["grpc"] = {"port": int(gm.group("port"))}
            if gm.group("svc"):
                probe["grpc"]["service"] = gm.group("svc")
    return {k: v for k, v in probe.items() if v is not None}


def _env(lines: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    body = [ln for ln in lines if ln.strip()]
    level = min((_indent(ln) for ln in body), default=0)
    for line in body:
        if _indent(line) != level:
            continue  # a multi-line value's continuation
        m = _ENV.match(line.strip())
        if m is None:
            continue
        item: dict[str, Any] = {"name": m.group("name")}
        # The references sit at the start and the field path at the end of a value.
        full = m.group("value") or ""
        value = full[:_VALUE_CHARS]
        optional = "Optional: true" in value
        if sk := _SECRET_KEY.search(value):
            item["valueFrom"] = {
                "secretKeyRef": {"name": sk["name"], "key": sk["key"], "optional": optional}
            }
        elif ck := _CONFIG_KEY.search(value):
            item["valueFrom"] = {
                "configMapKeyRef": {"name": ck["name"], "key": ck["key"], "optional": optional}
            }
        elif fr := _FIELD_REF.search(full[-_VALUE_CHARS:]):
            if fr["path"].startswith(("limits.", "requests.")):
                item["valueFrom"] = {"resourceFieldRef": {"resource": fr["path"]}}
            else:
                item["valueFrom"] = {"fieldRef": {"apiVersion": fr["api"], "fieldPath": fr["path"]}}
        # Plain values are left out on purpose: they may hold credentials.
        out.append(item)
    return out


def _env_from(lines: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in lines:
        m = _ENV_FROM.match(line.strip())
        if m is None:
            continue
        ref = "configMapRef" if m["kind"] == "ConfigMap" else "secretRef"
        item: dict[str, Any] = {ref: {"name": m["name"]}}
        if m["prefix"]:
            item["prefix"] = m["prefix"]
        out.append(item)
    return out


def _resources(node: _Node | None) -> dict[str, str]:
    if node is None:
        return {}
    out: dict[str, str] = {}
    for line in node.children:
        name, sep, qty = line.strip().partition(":")
        if sep and qty.strip():
            out[name.strip()] = qty.strip()
    return out


def _ports(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in text.split(","):
        number, _, proto = part.strip().partition("/")
        if (n := _int(number)) is not None and n > 0:
            out.append({"containerPort": n, "protocol": proto or "TCP"})
    return out


def _container(
    name: str, lines: list[str], r: _Reader
) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """(spec, status or None, whether the spec said its restartPolicy)."""
    fields = {n.key: n for n in _fields(lines)}

    def value(key: str) -> str | None:
        """The field's value, None when absent or <none>."""
        node = fields.get(key)
        return _value(node.value) if node is not None else None

    spec: dict[str, Any] = {"name": name}
    if image := value("Image"):
        spec["image"] = image
    for key, api in (("Command", "command"), ("Args", "args")):
        node = fields.get(key)
        if node is not None:
            spec[api] = [ln.strip() for ln in node.children if ln.strip()]
    ports = _ports(value("Ports") or value("Port") or "")
    if ports:
        spec["ports"] = ports
    limits, requests = _resources(fields.get("Limits")), _resources(fields.get("Requests"))
    if limits or requests:
        spec["resources"] = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    for key, api in (
        ("Liveness", "livenessProbe"),
        ("Readiness", "readinessProbe"),
        ("Startup", "startupProbe"),
    ):
        if (text := value(key)) and (probe := _probe(text)) is not None:
            spec[api] = probe
    if (node := fields.get("Environment")) is not None and (env := _env(node.children)):
        spec["env"] = env
    if (node := fields.get("Environment Variables from")) is not None and (
        env_from := _env_from(node.children)
    ):
        spec["envFrom"] = env_from
    if (node := fields.get("Mounts")) is not None:
        mounts = []
        for line in node.children:
            m = _MOUNT.match(line.strip())
            if m is None:
                continue
            flags = m["flags"].split(",")
            mount: dict[str, Any] = {
                "name": m["vol"],
                "mountPath": m["path"],
                "readOnly": "ro" in flags,
            }
            sub = next((f for f in flags if f.startswith("path=")), None)
            if sub:
                mount["subPath"] = sub.removeprefix("path=").strip('"')
            mounts.append(mount)
        if mounts:
            spec["volumeMounts"] = mounts
    said_policy = False
    if policy := value("Restart Policy"):
        spec["restartPolicy"] = policy
        said_policy = True

    if "State" not in fields and "Container ID" not in fields and "Ready" not in fields:
        return spec, None, said_policy
    status: dict[str, Any] = {"name": name}
    if cid := value("Container ID"):
        status["containerID"] = cid
    if image:
        status["image"] = image
    if image_id := value("Image ID"):
        status["imageID"] = image_id
    state = _state(fields.get("State"), r)
    last = _state(fields.get("Last State"), r)
    if state:
        status["state"] = state
    if last:
        status["lastState"] = last
    ready = (value("Ready") or "").lower() == "true"
    status["ready"] = ready
    status["restartCount"] = _int(value("Restart Count")) or 0
    # kubelet marks a running container started once its startup probe
    # passed (at once without one); ready implies started.
    running = "running" in state
    status["started"] = running and (ready or "startupProbe" not in spec)
    return spec, status, said_policy


def _containers(node: _Node | None, r: _Reader) -> tuple[list[Any], list[Any], bool]:
    specs: list[Any] = []
    statuses: list[Any] = []
    all_said = True
    if node is None:
        return specs, statuses, all_said
    for name, lines in _named_groups(node.children):
        spec, status, said = _container(name, lines, r)
        specs.append(spec)
        all_said = all_said and said
        if status is not None:
            statuses.append(status)
    return specs, statuses, all_said


# --------------------------------------------------------------------------
# Volumes, conditions, the pod
# --------------------------------------------------------------------------

_VOLUME_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    # describe's Type word -> (API key, {describe label: API field})
    "EmptyDir": ("emptyDir", {"Medium": "medium"}),
    "ConfigMap": ("configMap", {"Name": "name"}),
    "Secret": ("secret", {"SecretName": "secretName"}),
    "HostPath": ("hostPath", {"Path": "path", "HostPathType": "type"}),
    "PersistentVolumeClaim": ("persistentVolumeClaim", {"ClaimName": "claimName"}),
    "DownwardAPI": ("downwardAPI", {}),
    "CSI": ("csi", {"Driver": "driver"}),
    "NFS": ("nfs", {"Server": "server", "Path": "path"}),
    "EphemeralVolume": ("ephemeral", {}),
}


def _volumes(node: _Node | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if node is None:
        return out
    for name, lines in _named_groups(node.children):
        fields = {n.key: _value(n.value) for n in _fields(lines)}
        type_word = (fields.get("Type") or "").split(" ", 1)[0]
        volume: dict[str, Any] = {"name": name}
        if type_word == "Projected":
            sources: list[dict[str, Any]] = []
            if fields.get("ConfigMapName"):
                sources.append({"configMap": {"name": fields["ConfigMapName"]}})
            if fields.get("SecretName"):
                sources.append({"secret": {"name": fields["SecretName"]}})
            if fields.get("TokenExpirationSeconds"):
                sources.append({"serviceAccountToken": {"path": "token"}})
            if fields.get("DownwardAPI"):
                sources.append({"downwardAPI": {}})
            volume["projected"] = {"sources": sources}
        elif type_word in _VOLUME_TYPES:
            key, labels = _VOLUME_TYPES[type_word]
            volume[key] = {api: fields[lbl] for lbl, api in labels.items() if fields.get(lbl)}
        elif type_word:
            volume[type_word[:1].lower() + type_word[1:]] = {}
        out.append(volume)
    return out


def _conditions(node: _Node | None) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if node is None:
        return out
    for line in node.children:
        parts = line.split()
        if len(parts) >= 2 and parts[0] != "Type" and parts[1] in ("True", "False", "Unknown"):
            out.append({"type": parts[0], "status": parts[1]})
    return out


def _pairs(node: _Node | None, sep: str) -> dict[str, str]:
    """Labels (``k=v``) or annotations (``k: v``), one per line after the first."""
    out: dict[str, str] = {}
    if node is None:
        return out
    for line in [node.value, *node.children]:
        text = line.strip()
        if text in _NONE:
            continue
        key, found, value = text.partition(sep)
        if found and key and " " not in key:
            out[key] = value.strip() if sep != "=" else value
    return out


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


def _event_rows(lines: list[str]) -> tuple[list[Column], list[list[str]]]:
    body = [ln for ln in lines if ln.strip()]
    header_at = next(
        (i for i, ln in enumerate(body) if ln.split()[:1] in (["Type"], ["FirstSeen"])), None
    )
    if header_at is None:
        return [], []
    columns = columns_of(body[header_at])
    names = [c.name.lower().replace(" ", "") for c in columns]
    rows: list[list[str]] = []
    for line in body[header_at + 1 :]:
        if set(line.strip()) <= set("- "):
            continue  # the dashes under the header
        cells = split_row(line, columns)
        if cells is not None and _valid_event(dict(zip(names, cells, strict=True))):
            rows.append(cells)
        elif rows:
            # A message that ran over a line break continues on the next line.
            rows[-1][-1] += " " + line.strip()
    return columns, rows


def _valid_event(cells: dict[str, str]) -> bool:
    if "type" in cells and cells["type"] not in _EVENT_TYPES:
        return False
    if "age" in cells:
        return parse_age_cell(cells["age"]) is not None
    if "firstseen" in cells:
        first = cells["firstseen"]
        return first.startswith("<") or parse_age(first) is not None
    return True


def _events(node: _Node | None, pod: str, namespace: str, r: _Reader) -> list[EventDoc]:
    if node is None or _value(node.value) is not None:
        return []
    columns, rows = _event_rows(node.children)
    names = [c.name.lower().replace(" ", "") for c in columns]
    out: list[EventDoc] = []
    for n, cells in enumerate(rows):
        cell = dict(zip(names, cells, strict=True))
        last: timedelta | None
        first: timedelta | None
        if "age" in cell:
            age = parse_age_cell(cell["age"])
            last = age.last if age is not None else None
            first = age.first if age is not None and age.first is not None else last
            count = age.count if age is not None and age.count is not None else 1
        else:
            first = parse_age(cell.get("firstseen", ""))
            last = parse_age(cell.get("lastseen", "")) or first
            count = _int(cell.get("count")) or 1
        involved: dict[str, Any] = {"kind": "Pod", "name": pod, "namespace": namespace}
        if path := _value(cell.get("subobjectpath", "")):
            involved["fieldPath"] = path
        doc: dict[str, Any] = {
            "kind": "Event",
            "metadata": {"name": f"{pod}.describe-{n}", "namespace": namespace},
            "involvedObject": involved,
            "reason": cell.get("reason") or None,
            "message": cell.get("message") or None,
            "type": cell.get("type") or None,
            "count": count,
            "firstTimestamp": r.ago(first),
            "lastTimestamp": r.ago(last),
            "source": parse_source(cell.get("from", "")),
        }
        out.append(EventDoc(doc, textual=True))
    return out


# --------------------------------------------------------------------------
# One pod
# --------------------------------------------------------------------------


def _pod(lines: list[str], now: datetime, index: int, total: int) -> PodDoc:
    r = _Reader(now)
    nodes = _top_nodes(lines)
    top = {n.key: n for n in reversed(nodes)}  # the first of a key wins

    def value(key: str) -> str | None:
        """The top-level field's value, None when absent or <none>."""
        node = top.get(key)
        return _value(node.value) if node is not None else None

    name = value("Name") or ""
    namespace = value("Namespace") or ""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    spec: dict[str, Any] = {}
    status: dict[str, Any] = {}
    missing = list(_DESCRIBE_MISSING)
    notes: list[str] = []
    if labels := _pairs(top.get("Labels"), "="):
        meta["labels"] = labels
    if annotations := _pairs(top.get("Annotations"), ": "):
        meta["annotations"] = annotations
    controller = value("Controlled By") or value("Created By")
    if controller and "/" in controller:
        kind, _, owner = controller.partition("/")
        meta["ownerReferences"] = [{"kind": kind, "name": owner, "controller": True}]
    if (priority := _int(value("Priority"))) is not None:
        spec["priority"] = priority
    if sa := value("Service Account"):
        spec["serviceAccountName"] = sa
    node = value("Node")
    if node:
        node_name, _, host_ip = node.partition("/")
        if node_name:
            spec["nodeName"] = node_name
        if host_ip:
            status["hostIP"] = host_ip
    if start := value("Start Time"):
        status["startTime"] = r.time(start)
    phase_text = value("Status") or ""
    if lasts := _TERMINATING_LASTS.search(phase_text):
        gone = parse_age(lasts["age"])
        # "lasts" is the time since deletionTimestamp, which already includes
        # the grace period; "<invalid>" means it is still ahead.
        meta["deletionTimestamp"] = r.ago(gone) if gone is not None else iso(now)
        missing.append(GAP_PHASE)
        notes.append(
            f"deletionTimestamp taken as {lasts['age']} before --now (describe showed "
            f"'Terminating (lasts {lasts['age']})'), the phase behind it is not shown"
        )
    elif expires := _TERMINATING_EXPIRES.search(phase_text):
        meta["deletionTimestamp"] = r.time(expires["time"])
        missing.append(GAP_PHASE)
    elif phase_text:
        status["phase"] = phase_text.split()[0]
    else:
        missing.append(GAP_PHASE)
    grace = value("Termination Grace Period")
    if grace and (seconds := _int(grace.rstrip("s"))) is not None:
        meta["deletionGracePeriodSeconds"] = seconds
    if reason := value("Reason"):
        status["reason"] = reason
    if message := value("Message"):
        status["message"] = message
    if ip := value("IP"):
        status["podIP"] = ip
    if qos := value("QoS Class"):
        status["qosClass"] = qos

    init_specs, init_statuses, init_said = _containers(top.get("Init Containers"), r)
    app_specs, app_statuses, _ = _containers(top.get("Containers"), r)
    eph_specs, eph_statuses, _ = _containers(top.get("Ephemeral Containers"), r)
    if init_specs:
        spec["initContainers"] = init_specs
        if not init_said:
            missing.append(GAP_SIDECARS)
    spec["containers"] = app_specs
    if eph_specs:
        spec["ephemeralContainers"] = eph_specs
    if volumes := _volumes(top.get("Volumes")):
        spec["volumes"] = volumes
    for key, group in (
        ("initContainerStatuses", init_statuses),
        ("containerStatuses", app_statuses),
        ("ephemeralContainerStatuses", eph_statuses),
    ):
        if group:
            status[key] = group
    if conditions := _conditions(top.get("Conditions")):
        status["conditions"] = conditions
    events = _events(top.get("Events"), name, namespace, r)
    if events:
        notes.append(
            f"{len(events)} event{'s' if len(events) != 1 else ''} from the Events table; their "
            "ages are read as of --now"
        )
    notes.extend(r.notes)
    where = f"pod {index + 1} of the describe text" if total > 1 else ""
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}
    return PodDoc(
        doc=doc, shape="describe", where=where, missing=missing, notes=notes, events=events
    )


def parse_describe(text: str, now: datetime) -> list[PodDoc]:
    """Every pod described in ``text``, oldest layouts included; [] when none is."""
    blocks = list(_blocks(text))
    return [_pod(block, now, i, len(blocks)) for i, block in enumerate(blocks)]
