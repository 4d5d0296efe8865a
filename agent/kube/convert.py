"""Build ``agent.domain.kubemodel`` objects from API-server JSON.

The input is the camelCase document the API server serves: one object of a
watch stream, one item of a list, or ``kubectl get pod -o json``. The
kubernetes client's ``ApiClient().sanitize_for_serialization(obj)`` gives the
same shape, so this module never needs the client library.

Missing pieces are normal (a pod the scheduler has not placed has no
``status.containerStatuses``; a pod just created may have no status at all)
and become empty values. Present pieces of the wrong type are not: they raise
``InvalidInput`` naming the field, so a bad fixture fails loudly instead of
printing a wrong STATUS.

Part of the Kubernetes adapter, and the one the offline ``diagnose`` uses too: imports the
domain's API types, the errors and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from agent.domain.kubemodel import (
    MIRROR_POD_ANNOTATION,
    NO_STATE,
    ApiEvent,
    ApiPod,
    ContainerPort,
    ContainerSpec,
    ContainerStateInfo,
    ContainerStatus,
    OwnerRef,
    PodCondition,
    VolumeKind,
    VolumeMount,
    VolumeSpec,
)
from agent.errors import InvalidInput

__all__ = ["event_from_dict", "parse_time", "pod_from_dict"]

_Obj = Mapping[str, Any]

# RFC 3339 as Kubernetes writes it: metav1.Time has whole seconds, MicroTime
# six fraction digits, container runtimes up to nine; "Z" or a numeric offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


# --------------------------------------------------------------------------
# Field access with a path for error messages
# --------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bad(path: str, want: str, value: object) -> InvalidInput:
    return InvalidInput(f"{path}: expected {want}, got {type(value).__name__}", field=path)


def _obj(d: _Obj, key: str, path: str) -> _Obj:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(_join(path, key), "an object", value)
    return cast(_Obj, value)


def _objs(d: _Obj, key: str, path: str) -> list[tuple[str, _Obj]]:
    value = d.get(key)
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _bad(_join(path, key), "a list", value)
    out: list[tuple[str, _Obj]] = []
    for i, item in enumerate(value):
        item_path = f"{_join(path, key)}[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(item_path, "an object", item)
        out.append((item_path, cast(_Obj, item)))
    return out


def _str(d: _Obj, key: str, path: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(_join(path, key), "a string", value)
    return value


def _nonempty(d: _Obj, key: str, path: str) -> str | None:
    """A string field where "" means the same as absent (Go's zero value)."""
    return _str(d, key, path) or None


def _strs(d: _Obj, key: str, path: str) -> tuple[str, ...]:
    value = d.get(key)
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _bad(_join(path, key), "a list of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"{_join(path, key)}[{i}]", "a string", item)
    return tuple(value)


def _int(d: _Obj, key: str, path: str) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    # bool is an int subclass; true/false where a number belongs is a bad document.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(_join(path, key), "an integer", value)
    return value


def _bool(d: _Obj, key: str, path: str) -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _bad(_join(path, key), "true or false", value)
    return value


def _str_map(d: _Obj, key: str, path: str) -> dict[str, str]:
    """Labels, annotations, resource quantities. Quantities may be bare numbers
    in hand-written documents, so scalars are stringified."""
    out: dict[str, str] = {}
    for k, v in _obj(d, key, path).items():
        if isinstance(v, Mapping | list):
            raise _bad(f"{_join(path, key)}.{k}", "a string", v)
        out[str(k)] = "" if v is None else str(v)
    return out


def parse_time(value: object, path: str = "timestamp") -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; None for absent/empty."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        # sanitize_for_serialization leaves strings, but V1 objects turned
        # into dicts by other means may carry datetimes already.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise _bad(path, "an RFC 3339 timestamp", value)
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        raise InvalidInput(f"{path}: {value!r} is not an RFC 3339 timestamp", field=path)
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    tz: timezone = UTC
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    # Python keeps microseconds; nanoseconds from runtimes are cut, not rounded,
    # so a time never moves past the second it was written in.
    micros = int((frac or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
    except ValueError as exc:
        raise InvalidInput(f"{path}: {value!r} is not a valid time: {exc}", field=path) from exc
    return parsed.astimezone(UTC)


def _time(d: _Obj, key: str, path: str) -> datetime | None:
    return parse_time(d.get(key), _join(path, key))


# --------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------


def _port_text(port: object) -> str:
    return "" if port is None else str(port)


def _describe_probe(probe: _Obj, path: str) -> str:
    if probe.get("httpGet") is not None:
        http = _obj(probe, "httpGet", path)
        hp = _join(path, "httpGet")
        scheme = (_str(http, "scheme", hp) or "HTTP").lower()
        host = _str(http, "host", hp) or ""
        what = f"http-get {scheme}://{host}:{_port_text(http.get('port'))}"
        what += _str(http, "path", hp) or ""
    elif probe.get("tcpSocket") is not None:
        tcp = _obj(probe, "tcpSocket", path)
        host = _str(tcp, "host", _join(path, "tcpSocket")) or ""
        what = f"tcp-socket {host}:{_port_text(tcp.get('port'))}"
    elif probe.get("grpc") is not None:
        grpc = _obj(probe, "grpc", path)
        what = f"grpc :{_port_text(grpc.get('port'))}"
        if service := _str(grpc, "service", _join(path, "grpc")):
            what += f" service={service}"
    elif probe.get("exec") is not None:
        command = _strs(_obj(probe, "exec", path), "command", _join(path, "exec"))
        what = f"exec [{' '.join(command)}]"
    else:
        what = "unknown"
    # The API server fills these defaults; documents written by hand may not.
    delay = _int(probe, "initialDelaySeconds", path) or 0
    timeout = _int(probe, "timeoutSeconds", path) or 1
    period = _int(probe, "periodSeconds", path) or 10
    success = _int(probe, "successThreshold", path) or 1
    failure = _int(probe, "failureThreshold", path) or 3
    return (
        f"{what} delay={delay}s timeout={timeout}s period={period}s"
        f" #success={success} #failure={failure}"
    )


def _probe(d: _Obj, key: str, path: str) -> str | None:
    if d.get(key) is None:
        return None
    return _describe_probe(_obj(d, key, path), _join(path, key))


def _env_from(d: _Obj, path: str) -> tuple[str, ...]:
    out: list[str] = []
    for item_path, item in _objs(d, "envFrom", path):
        prefix = _str(item, "prefix", item_path)
        if cm := _obj(item, "configMapRef", item_path):
            source = f"configMap:{_str(cm, 'name', item_path) or ''}"
        elif sec := _obj(item, "secretRef", item_path):
            source = f"secret:{_str(sec, 'name', item_path) or ''}"
        else:
            source = "other"
        out.append(f"{source} prefix={prefix}" if prefix else source)
    return tuple(out)


def _container_spec(c: _Obj, path: str) -> ContainerSpec:
    name = _str(c, "name", path)
    if not name:
        raise InvalidInput(f"{path}: container has no name", field=f"{path}.name")
    ports: list[ContainerPort] = []
    for port_path, p in _objs(c, "ports", path):
        number = _int(p, "containerPort", port_path)
        if number is None:
            raise InvalidInput(
                f"{port_path}: port has no containerPort", field=f"{port_path}.containerPort"
            )
        ports.append(
            ContainerPort(
                container_port=number,
                name=_nonempty(p, "name", port_path),
                protocol=_str(p, "protocol", port_path) or "TCP",
            )
        )
    mounts = tuple(
        VolumeMount(
            name=_str(m, "name", mount_path) or "",
            mount_path=_str(m, "mountPath", mount_path) or "",
            read_only=bool(_bool(m, "readOnly", mount_path)),
            sub_path=_nonempty(m, "subPath", mount_path) or _nonempty(m, "subPathExpr", mount_path),
        )
        for mount_path, m in _objs(c, "volumeMounts", path)
    )
    # Only the names are read: env values (and valueFrom references) stay in
    # ``raw`` and never become part of the model.
    env_names = tuple(_str(e, "name", env_path) or "" for env_path, e in _objs(c, "env", path))
    resources = _obj(c, "resources", path)
    return ContainerSpec(
        name=name,
        image=_nonempty(c, "image", path),
        command=_strs(c, "command", path),
        args=_strs(c, "args", path),
        restart_policy=_nonempty(c, "restartPolicy", path),
        ports=tuple(ports),
        volume_mounts=mounts,
        env_names=env_names,
        env_from=_env_from(c, path),
        readiness_probe=_probe(c, "readinessProbe", path),
        liveness_probe=_probe(c, "livenessProbe", path),
        startup_probe=_probe(c, "startupProbe", path),
        limits=_str_map(resources, "limits", f"{path}.resources"),
        requests=_str_map(resources, "requests", f"{path}.resources"),
        working_dir=_nonempty(c, "workingDir", path),
        termination_message_path=_nonempty(c, "terminationMessagePath", path),
        target_container_name=_nonempty(c, "targetContainerName", path),
    )


def _state(d: _Obj, key: str, path: str) -> ContainerStateInfo:
    state = _obj(d, key, path)
    path = _join(path, key)
    # The API server allows at most one of the three; should a document carry
    # several anyway, the one furthest along the lifecycle wins.
    if state.get("terminated") is not None:
        s = _obj(state, "terminated", path)
        p = _join(path, "terminated")
        return ContainerStateInfo(
            kind="terminated",
            reason=_nonempty(s, "reason", p),
            message=_nonempty(s, "message", p),
            # An omitted exitCode is Go's zero value, which is what kubectl sees.
            exit_code=_int(s, "exitCode", p) or 0,
            signal=_int(s, "signal", p) or None,
            started_at=_time(s, "startedAt", p),
            finished_at=_time(s, "finishedAt", p),
            container_id=_nonempty(s, "containerID", p),
        )
    if state.get("running") is not None:
        s = _obj(state, "running", path)
        return ContainerStateInfo(
            kind="running", started_at=_time(s, "startedAt", _join(path, "running"))
        )
    if state.get("waiting") is not None:
        s = _obj(state, "waiting", path)
        p = _join(path, "waiting")
        return ContainerStateInfo(
            kind="waiting", reason=_nonempty(s, "reason", p), message=_nonempty(s, "message", p)
        )
    return NO_STATE


def _runtime_id(container_id: str | None) -> str | None:
    if not container_id:
        return None
    _, sep, bare = container_id.partition("://")
    return (bare or None) if sep else container_id


def _container_status(s: _Obj, path: str) -> ContainerStatus:
    name = _str(s, "name", path)
    if not name:
        raise InvalidInput(f"{path}: container status has no name", field=f"{path}.name")
    container_id = _nonempty(s, "containerID", path)
    return ContainerStatus(
        name=name,
        container_id=container_id,
        runtime_container_id=_runtime_id(container_id),
        image=_nonempty(s, "image", path),
        image_id=_nonempty(s, "imageID", path),
        ready=bool(_bool(s, "ready", path)),
        started=_bool(s, "started", path),
        restart_count=_int(s, "restartCount", path) or 0,
        state=_state(s, "state", path),
        last_state=_state(s, "lastState", path),
    )


_SIMPLE_VOLUMES: dict[str, tuple[VolumeKind, str | None]] = {
    # API key -> (kind, field of the source naming what it points at)
    "emptyDir": ("emptyDir", "medium"),
    "configMap": ("configMap", "name"),
    "secret": ("secret", "secretName"),
    "hostPath": ("hostPath", "path"),
    "persistentVolumeClaim": ("persistentVolumeClaim", "claimName"),
    "downwardAPI": ("downwardAPI", None),
    "csi": ("csi", "driver"),
    "ephemeral": ("ephemeral", None),
}


def _projected_detail(source: _Obj, path: str) -> str:
    parts: list[str] = []
    for src_path, src in _objs(source, "sources", path):
        if src.get("configMap") is not None:
            cm = _obj(src, "configMap", src_path)
            parts.append(f"configMap:{_str(cm, 'name', _join(src_path, 'configMap')) or ''}")
        elif src.get("secret") is not None:
            sec = _obj(src, "secret", src_path)
            parts.append(f"secret:{_str(sec, 'name', _join(src_path, 'secret')) or ''}")
        else:
            # serviceAccountToken, downwardAPI, clusterTrustBundle, podCertificate:
            # the source type is all there is to say in one line.
            parts.extend(k for k, v in src.items() if v is not None)
    return ",".join(parts)


def _volume(v: _Obj, path: str) -> VolumeSpec:
    name = _str(v, "name", path) or ""
    for key, (kind, detail_field) in _SIMPLE_VOLUMES.items():
        if v.get(key) is None:
            continue
        source = _obj(v, key, path)
        detail = ""
        if detail_field is not None:
            detail = _str(source, detail_field, _join(path, key)) or ""
        if kind == "hostPath" and (host_type := _str(source, "type", _join(path, key))):
            detail = f"{detail} type={host_type}"
        return VolumeSpec(name=name, kind=kind, detail=detail)
    if v.get("projected") is not None:
        projected = _obj(v, "projected", path)
        return VolumeSpec(
            name=name, kind="projected", detail=_projected_detail(projected, f"{path}.projected")
        )
    if v.get("nfs") is not None:
        nfs = _obj(v, "nfs", path)
        server = _str(nfs, "server", f"{path}.nfs") or ""
        return VolumeSpec(
            name=name, kind="nfs", detail=f"{server}:{_str(nfs, 'path', f'{path}.nfs') or ''}"
        )
    others = [k for k in v if k != "name" and v[k] is not None]
    return VolumeSpec(name=name, kind="other", detail=",".join(others))


def _check_kind(d: _Obj, want: str) -> None:
    kind = d.get("kind")
    if kind is not None and kind != want:
        raise InvalidInput(f"expected a {want}, got kind {kind!r}", kind=str(kind))


def pod_from_dict(d: Mapping[str, Any]) -> ApiPod:
    """An ``ApiPod`` from one Pod document; ``InvalidInput`` if it is not a Pod."""
    if not isinstance(d, Mapping):
        raise _bad("pod", "an object", d)
    _check_kind(d, "Pod")
    meta = _obj(d, "metadata", "")
    name = _str(meta, "name", "metadata")
    if not name:
        raise InvalidInput("not a Pod: metadata.name is missing", field="metadata.name")
    spec = _obj(d, "spec", "")
    status = _obj(d, "status", "")

    owners = tuple(
        OwnerRef(
            kind=_str(o, "kind", p) or "",
            name=_str(o, "name", p) or "",
            uid=_str(o, "uid", p) or "",
            controller=bool(_bool(o, "controller", p)),
        )
        for p, o in _objs(meta, "ownerReferences", "metadata")
    )
    annotations = _str_map(meta, "annotations", "metadata")
    pod_ips = tuple(
        ip for p, entry in _objs(status, "podIPs", "status") if (ip := _str(entry, "ip", p))
    )
    pod_ip = _nonempty(status, "podIP", "status") or (pod_ips[0] if pod_ips else None)

    return ApiPod(
        namespace=_str(meta, "namespace", "metadata") or "",
        name=name,
        uid=_str(meta, "uid", "metadata") or "",
        resource_version=_str(meta, "resourceVersion", "metadata") or "",
        node_name=_nonempty(spec, "nodeName", "spec"),
        phase=_str(status, "phase", "status") or "",
        reason=_nonempty(status, "reason", "status"),
        message=_nonempty(status, "message", "status"),
        labels=_str_map(meta, "labels", "metadata"),
        annotations=annotations,
        owners=owners,
        creation_timestamp=_time(meta, "creationTimestamp", "metadata"),
        deletion_timestamp=_time(meta, "deletionTimestamp", "metadata"),
        deletion_grace_period_seconds=_int(meta, "deletionGracePeriodSeconds", "metadata"),
        start_time=_time(status, "startTime", "status"),
        restart_policy=_str(spec, "restartPolicy", "spec") or "Always",
        share_process_namespace=bool(_bool(spec, "shareProcessNamespace", "spec")),
        host_network=bool(_bool(spec, "hostNetwork", "spec")),
        priority=_int(spec, "priority", "spec"),
        qos_class=_nonempty(status, "qosClass", "status"),
        host_ip=_nonempty(status, "hostIP", "status"),
        pod_ip=pod_ip,
        pod_ips=pod_ips or ((pod_ip,) if pod_ip else ()),
        termination_grace_period_seconds=_int(spec, "terminationGracePeriodSeconds", "spec"),
        conditions=tuple(
            PodCondition(
                type=_str(c, "type", p) or "",
                status=_str(c, "status", p) or "Unknown",
                reason=_nonempty(c, "reason", p),
                message=_nonempty(c, "message", p),
                last_transition_time=_time(c, "lastTransitionTime", p),
            )
            for p, c in _objs(status, "conditions", "status")
        ),
        init_containers=tuple(
            _container_spec(c, p) for p, c in _objs(spec, "initContainers", "spec")
        ),
        containers=tuple(_container_spec(c, p) for p, c in _objs(spec, "containers", "spec")),
        ephemeral_containers=tuple(
            _container_spec(c, p) for p, c in _objs(spec, "ephemeralContainers", "spec")
        ),
        init_container_statuses=tuple(
            _container_status(s, p) for p, s in _objs(status, "initContainerStatuses", "status")
        ),
        container_statuses=tuple(
            _container_status(s, p) for p, s in _objs(status, "containerStatuses", "status")
        ),
        ephemeral_container_statuses=tuple(
            _container_status(s, p)
            for p, s in _objs(status, "ephemeralContainerStatuses", "status")
        ),
        volumes=tuple(_volume(v, p) for p, v in _objs(spec, "volumes", "spec")),
        is_mirror=MIRROR_POD_ANNOTATION in annotations,
        raw=d,
    )


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


def event_from_dict(d: Mapping[str, Any]) -> ApiEvent:
    """An ``ApiEvent`` from one core/v1 Event document."""
    if not isinstance(d, Mapping):
        raise _bad("event", "an object", d)
    _check_kind(d, "Event")
    meta = _obj(d, "metadata", "")
    name = _str(meta, "name", "metadata")
    if not name:
        raise InvalidInput("not an Event: metadata.name is missing", field="metadata.name")
    involved = _obj(d, "involvedObject", "")
    source = _obj(d, "source", "")
    series = _obj(d, "series", "")
    count = _int(d, "count", "")
    if count is None:
        count = _int(series, "count", "series")
    namespace = _str(meta, "namespace", "metadata") or ""
    return ApiEvent(
        namespace=namespace,
        name=name,
        uid=_str(meta, "uid", "metadata") or "",
        involved_kind=_str(involved, "kind", "involvedObject") or "",
        involved_name=_str(involved, "name", "involvedObject") or "",
        involved_namespace=_str(involved, "namespace", "involvedObject") or namespace,
        involved_uid=_str(involved, "uid", "involvedObject") or "",
        involved_field_path=_nonempty(involved, "fieldPath", "involvedObject"),
        reason=_nonempty(d, "reason", ""),
        message=_nonempty(d, "message", ""),
        type=_nonempty(d, "type", ""),
        count=count,
        first_timestamp=_time(d, "firstTimestamp", ""),
        last_timestamp=_time(d, "lastTimestamp", ""),
        event_time=_time(d, "eventTime", ""),
        series_last_observed=_time(series, "lastObservedTime", "series"),
        source_component=_nonempty(source, "component", "source"),
        source_host=_nonempty(source, "host", "source"),
        reporting_component=_nonempty(d, "reportingComponent", ""),
        reporting_instance=_nonempty(d, "reportingInstance", ""),
        raw=d,
    )
