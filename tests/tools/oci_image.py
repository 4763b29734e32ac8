#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds container images for tests and pushes them to a registry (Python stdlib only).

Layers come from directories, tar files or JSON layer specs (any tar entry: files, dirs,
symlinks, hard links, whiteouts, opaque dirs, device nodes, FIFOs, xattrs); manifests are OCI
or Docker schema 2; layers gzip, zstd (the `zstd` CLI) or uncompressed; indexes and manifest
lists for several platforms. Pushes use the distribution API over HTTP: monolithic blob
uploads (POST then PUT), manifest PUT, optional basic or bearer-token authentication.

  oci_image.py push --registry 127.0.0.1:5000 --repo test/busybox --tag v1 \\
      --layer DIR_OR_TAR [--layer ...] [--layer-spec SPEC.json] [--busybox] \\
      [--format oci|docker] [--compression gzip|zstd|none[,...]] [--platform linux/amd64]
  oci_image.py push-index --registry 127.0.0.1:5000 --repo test/multi --tag v1 \\
      --manifest sha256:... [--manifest sha256:...=linux/arm64/v8] [--format oci|docker]
  oci_image.py push-raw --registry ... --repo R --tag T --media-type TYPE --file MANIFEST
  oci_image.py layer --out layer.tar[.gz|.zst] (DIR | --layer-spec SPEC.json | --busybox)
  oci_image.py busybox-rootfs DIR

`push`, `push-index` and `push-raw` print the manifest digest as the last line of stdout.

A layer spec is a JSON list of entries:
  {"path": "etc/hello", "type": "file", "content": "hi\\n", "mode": 420, "uid": 0, "gid": 0,
   "mtime": 0, "xattrs": {"user.k": "v"}}
  types: file (content or content_base64), dir, symlink (target), hardlink (target: a path in
  the same layer), whiteout (writes .wh.<name>), opaque (writes <dir>/.wh..wh..opq), char and
  block (major, minor), fifo.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import platform as pyplatform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

LAYER_TYPES = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    # Docker schema 2 has no zstd type; containerd and buildx use the OCI one.
    ("docker", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}

BUSYBOX = "/bin/busybox"
FIXED_MTIME = 946684800  # 2000-01-01: reproducible layers


def die(msg):
    print(f"oci_image.py: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Layers


def host_platform():
    machine = pyplatform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
            "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64"}.get(machine, machine)
    variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine, "")
    return "linux", arch, variant


def parse_platform(text):
    parts = text.split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts[:2]):
        die(f"platform {text!r} should be os/arch[/variant], e.g. linux/arm64/v8")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def busybox_rootfs(root):
    """Debian's static busybox at /bin/busybox with a symlink per applet."""
    if not os.path.exists(BUSYBOX):
        die(f"{BUSYBOX} not found (install busybox-static)")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "sys", "dev"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    os.chmod(os.path.join(root, "bin", "busybox"), 0o755)
    out = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    for applet in out.stdout.split():
        path = os.path.join(root, applet)
        if os.path.lexists(path) or applet == "bin/busybox":
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        target = os.path.relpath(os.path.join(root, "bin", "busybox"), os.path.dirname(path))
        os.symlink(target, path)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(os.path.join(root, "tmp"), 0o1777)


def tar_directory(src):
    """Tar of a directory's contents (not the directory itself), sorted, owned by root."""
    buf = io.BytesIO()

    def reset(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(src)):
            tar.add(os.path.join(src, name), arcname=name, recursive=True, filter=reset)
    return buf.getvalue()


def tar_spec(entries):
    """Tar from a list of entry dicts (see the module docstring)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            kind = e.get("type", "file")
            path = e["path"].lstrip("/")
            data = b""
            if kind == "whiteout":
                head, tail = os.path.split(path)
                path = os.path.join(head, ".wh." + tail)
                kind = "file"
            elif kind == "opaque":
                path = os.path.join(path, ".wh..wh..opq")
                kind = "file"
            info = tarfile.TarInfo(path)
            info.mtime = e.get("mtime", FIXED_MTIME)
            info.uid = e.get("uid", 0)
            info.gid = e.get("gid", 0)
            if kind == "file":
                if "content_base64" in e:
                    data = base64.b64decode(e["content_base64"])
                else:
                    data = e.get("content", "").encode()
                info.type = tarfile.REGTYPE
                info.size = len(data)
                info.mode = e.get("mode", 0o644)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = e.get("mode", 0o755)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e["target"]
                info.mode = e.get("mode", 0o777)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = e["target"].lstrip("/")
                info.mode = e.get("mode", 0o644)
            elif kind in ("char", "block"):
                info.type = tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE
                info.devmajor = e.get("major", 0)
                info.devminor = e.get("minor", 0)
                info.mode = e.get("mode", 0o666)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                info.mode = e.get("mode", 0o644)
            else:
                die(f"layer spec entry {path!r}: unknown type {kind!r}")
            if e.get("xattrs"):
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e["xattrs"].items()}
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def detect_compression(data):
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def decompress(data, kind):
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "zstd":
        return subprocess.run(["zstd", "-d", "-q", "-c"], input=data, check=True,
                              capture_output=True).stdout
    return data


def compress(tar, kind):
    if kind == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if kind == "zstd":
        if shutil.which("zstd") is None:
            die("zstd layers need the zstd command (apt-get install zstd)")
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=tar, check=True,
                              capture_output=True).stdout
    if kind == "none":
        return tar
    die(f"unknown compression {kind!r} (gzip, zstd, none)")


def load_layer_tar(source):
    """Uncompressed tar bytes of a layer source: a directory or a (compressed) tar file."""
    if os.path.isdir(source):
        return tar_directory(source)
    if not os.path.isfile(source):
        die(f"layer {source!r} is neither a directory nor a file")
    with open(source, "rb") as f:
        data = f.read()
    return decompress(data, detect_compression(data))


# ---------------------------------------------------------------------------------------------
# Registry client


class Registry:
    def __init__(self, address, repo, username=None, password=None, scheme="http"):
        self.scheme = scheme
        self.address = address
        self.repo = repo
        self.username = username
        self.password = password
        self.token = None

    def _basic(self):
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _conn(self, netloc, scheme):
        if scheme == "https":
            import ssl
            return http.client.HTTPSConnection(netloc, timeout=60,
                                               context=ssl._create_unverified_context())
        return http.client.HTTPConnection(netloc, timeout=60)

    def _fetch_token(self, challenge):
        params = {}
        for part in challenge[len("Bearer "):].split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        realm = params.get("realm")
        if not realm:
            die(f"bearer challenge without realm: {challenge}")
        query = {"service": params.get("service", ""),
                 "scope": f"repository:{self.repo}:pull,push"}
        url = urllib.parse.urlsplit(realm)
        path = url.path + "?" + (url.query + "&" if url.query else "") + \
            urllib.parse.urlencode(query)
        conn = self._conn(url.netloc, url.scheme)
        headers = {"Authorization": self._basic()} if self.username else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            die(f"token service {realm} answered {resp.status}: {body[:200]!r}")
        doc = json.loads(body)
        self.token = doc.get("token") or doc.get("access_token")

    def request(self, method, url, body=None, headers=None, ok=(200,)):
        """Sends a request (url: absolute, or a path under the registry), answering a 401."""
        if not url.startswith("http"):
            url = f"{self.scheme}://{self.address}{url}"
        for attempt in range(2):
            parts = urllib.parse.urlsplit(url)
            h = dict(headers or {})
            if self.token:
                h["Authorization"] = "Bearer " + self.token
            elif self.username and attempt > 0:
                h["Authorization"] = self._basic()
            if body is not None:
                h["Content-Length"] = str(len(body))
            conn = self._conn(parts.netloc, parts.scheme)
            path = parts.path + ("?" + parts.query if parts.query else "")
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            if resp.status == 401 and attempt == 0:
                challenge = resp.getheader("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer"):
                    self._fetch_token(challenge)
                elif not self.username:
                    die(f"{method} {url}: registry requires credentials (--username/--password)")
                continue
            if resp.status not in ok:
                die(f"{method} {url}: HTTP {resp.status}: {data[:500]!r}")
            return resp, data
        die(f"{method} {url}: authentication failed")

    def push_blob(self, data):
        digest = sha256(data)
        resp, _ = self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}", ok=(200, 404))
        if resp.status == 200:
            return digest
        resp, _ = self.request("POST", f"/v2/{self.repo}/blobs/uploads/", body=b"", ok=(202,))
        location = resp.getheader("Location")
        if not location:
            die("blob upload POST answered without a Location")
        location = urllib.parse.urljoin(f"{self.scheme}://{self.address}/", location)
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", body=data,
                     headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        return digest

    def push_manifest(self, reference, media_type, data):
        resp, _ = self.request("PUT", f"/v2/{self.repo}/manifests/{reference}", body=data,
                               headers={"Content-Type": media_type}, ok=(201,))
        digest = sha256(data)
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and claimed != digest:
            die(f"registry says the manifest digest is {claimed}, computed {digest}")
        return digest

    def get_manifest(self, reference):
        accept = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST])
        resp, data = self.request("GET", f"/v2/{self.repo}/manifests/{reference}",
                                  headers={"Accept": accept})
        return resp.getheader("Content-Type", "").split(";")[0], data

    def get_blob(self, digest):
        _, data = self.request("GET", f"/v2/{self.repo}/blobs/{digest}")
        return data


# ---------------------------------------------------------------------------------------------
# Commands


def build_layers(args):
    """[(uncompressed tar bytes)] in order: --busybox first, then --layer and --layer-spec in
    the order given on the command line."""
    tars = []
    if args.busybox:
        with tempfile.TemporaryDirectory() as d:
            busybox_rootfs(d)
            tars.append(tar_directory(d))
    for kind, value in args.layer_sources or []:
        if kind == "layer":
            tars.append(load_layer_tar(value))
        else:
            with open(value) as f:
                tars.append(tar_spec(json.load(f)))
    return tars


def compressions_for(args, count):
    kinds = (args.compression or "gzip").split(",")
    if len(kinds) == 1:
        return kinds * count
    if len(kinds) != count:
        die(f"--compression lists {len(kinds)} kinds for {count} layers")
    return kinds


def cmd_push(args):
    fmt = args.format
    tars = build_layers(args)
    reg = Registry(args.registry, args.repo, args.username, args.password, args.scheme)
    os_, arch, variant = parse_platform(args.platform) if args.platform else host_platform()
    layers, diff_ids = [], []
    for tar, kind in zip(tars, compressions_for(args, len(tars))):
        blob = compress(tar, kind)
        digest = reg.push_blob(blob)
        layers.append({"mediaType": LAYER_TYPES[(fmt, kind)], "digest": digest,
                       "size": len(blob)})
        diff_ids.append(sha256(tar))
    if args.config_file:
        with open(args.config_file) as f:
            config = json.load(f)
    else:
        config = {"created": "2000-01-01T00:00:00Z", "architecture": arch, "os": os_,
                  "config": {}, "history": [{"created": "2000-01-01T00:00:00Z",
                                             "created_by": "oci_image.py"}
                                            for _ in tars]}
        if variant:
            config["variant"] = variant
        c = config["config"]
        c["Env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        c["Env"] += args.env or []
        if args.entrypoint:
            c["Entrypoint"] = json.loads(args.entrypoint)
        if args.cmd:
            c["Cmd"] = json.loads(args.cmd)
        elif args.busybox or not args.entrypoint:
            c["Cmd"] = ["/bin/sh"]
        if args.workdir:
            c["WorkingDir"] = args.workdir
        if args.user:
            c["User"] = args.user
        if args.label:
            c["Labels"] = dict(kv.split("=", 1) for kv in args.label)
        if args.stop_signal:
            c["StopSignal"] = args.stop_signal
    config.setdefault("rootfs", {})
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = reg.push_blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG,
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
    }
    if args.annotation:
        if fmt != "oci":
            die("--annotation needs --format oci")
        manifest["annotations"] = dict(kv.split("=", 1) for kv in args.annotation)
    data = json.dumps(manifest, indent=3).encode()
    if args.out_manifest:
        with open(args.out_manifest, "wb") as f:
            f.write(data)
    digest = reg.push_manifest(args.tag or sha256(data), manifest["mediaType"], data)
    print(f"config {config_digest}", file=sys.stderr)
    for layer in layers:
        print(f"layer {layer['digest']} {layer['mediaType']} {layer['size']}", file=sys.stderr)
    print(digest)


def cmd_push_index(args):
    reg = Registry(args.registry, args.repo, args.username, args.password, args.scheme)
    entries = []
    for item in args.manifest:
        digest, _, plat = item.partition("=")
        media_type, data = reg.get_manifest(digest)
        if sha256(data) != digest:
            die(f"manifest {digest} fetched back with digest {sha256(data)}")
        if plat:
            os_, arch, variant = parse_platform(plat)
        else:
            config = json.loads(reg.get_blob(json.loads(data)["config"]["digest"]))
            os_, arch, variant = config["os"], config["architecture"], config.get("variant", "")
        platform = {"architecture": arch, "os": os_}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": json.loads(data).get("mediaType", media_type),
                        "digest": digest, "size": len(data), "platform": platform})
    index = {"schemaVersion": 2,
             "mediaType": OCI_INDEX if args.format == "oci" else DOCKER_LIST,
             "manifests": entries}
    if args.annotation:
        index["annotations"] = dict(kv.split("=", 1) for kv in args.annotation)
    data = json.dumps(index, indent=3).encode()
    print(reg.push_manifest(args.tag or sha256(data), index["mediaType"], data))


def cmd_push_raw(args):
    reg = Registry(args.registry, args.repo, args.username, args.password, args.scheme)
    with open(args.file, "rb") as f:
        data = f.read()
    for blob in args.blob or []:
        with open(blob, "rb") as f:
            reg.push_blob(f.read())
    print(reg.push_manifest(args.tag or sha256(data), args.media_type, data))


def cmd_layer(args):
    if args.busybox:
        with tempfile.TemporaryDirectory() as d:
            busybox_rootfs(d)
            tar = tar_directory(d)
    elif args.layer_spec:
        with open(args.layer_spec) as f:
            tar = tar_spec(json.load(f))
    elif args.source:
        tar = load_layer_tar(args.source)
    else:
        die("layer needs a DIR/TAR, --layer-spec or --busybox")
    kind = args.compression or {".gz": "gzip", ".tgz": "gzip", ".zst": "zstd"}.get(
        os.path.splitext(args.out)[1], "none")
    blob = compress(tar, kind)
    with open(args.out, "wb") as f:
        f.write(blob)
    print(f"{sha256(blob)} diff_id={sha256(tar)} size={len(blob)}")


def cmd_busybox_rootfs(args):
    os.makedirs(args.dir, exist_ok=True)
    busybox_rootfs(args.dir)


class LayerSource(argparse.Action):
    """Keeps --layer and --layer-spec in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        sources = getattr(namespace, "layer_sources", None) or []
        sources.append(("layer" if option_string == "--layer" else "spec", values))
        namespace.layer_sources = sources


def main(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def registry_args(sp):
        sp.add_argument("--registry", required=True, help="host:port")
        sp.add_argument("--scheme", default="http", choices=["http", "https"])
        sp.add_argument("--repo", required=True)
        sp.add_argument("--tag", help="tag to push to (default: by digest only)")
        sp.add_argument("--username")
        sp.add_argument("--password")

    sp = sub.add_parser("push", help="build and push an image")
    registry_args(sp)
    sp.add_argument("--layer", action=LayerSource, help="directory or tar (gz/zst) file")
    sp.add_argument("--layer-spec", action=LayerSource, help="JSON list of tar entries")
    sp.add_argument("--busybox", action="store_true", help="a busybox rootfs as first layer")
    sp.add_argument("--format", default="oci", choices=["oci", "docker"])
    sp.add_argument("--compression", help="gzip|zstd|none, or a comma list per layer")
    sp.add_argument("--platform", help="os/arch[/variant] (default: this host)")
    sp.add_argument("--config-file", help="image config JSON to use (rootfs is filled in)")
    sp.add_argument("--entrypoint", help="JSON list")
    sp.add_argument("--cmd", help="JSON list")
    sp.add_argument("--env", action="append", help="K=V")
    sp.add_argument("--workdir")
    sp.add_argument("--user")
    sp.add_argument("--label", action="append", help="K=V")
    sp.add_argument("--annotation", action="append", help="K=V (manifest annotation)")
    sp.add_argument("--stop-signal")
    sp.add_argument("--out-manifest", help="also write the manifest bytes here")
    sp.set_defaults(func=cmd_push, layer_sources=[])

    sp = sub.add_parser("push-index", help="push an index of manifests already in the repo")
    registry_args(sp)
    sp.add_argument("--manifest", action="append", required=True,
                    help="DIGEST or DIGEST=os/arch[/variant]")
    sp.add_argument("--format", default="oci", choices=["oci", "docker"])
    sp.add_argument("--annotation", action="append", help="K=V")
    sp.set_defaults(func=cmd_push_index)

    sp = sub.add_parser("push-raw", help="push manifest bytes as they are")
    registry_args(sp)
    sp.add_argument("--media-type", required=True)
    sp.add_argument("--file", required=True)
    sp.add_argument("--blob", action="append", help="a blob file to push first")
    sp.set_defaults(func=cmd_push_raw)

    sp = sub.add_parser("layer", help="write one layer blob")
    sp.add_argument("source", nargs="?", help="directory or tar")
    sp.add_argument("--layer-spec")
    sp.add_argument("--busybox", action="store_true")
    sp.add_argument("--out", required=True)
    sp.add_argument("--compression", choices=["gzip", "zstd", "none"])
    sp.set_defaults(func=cmd_layer)

    sp = sub.add_parser("busybox-rootfs", help="write a busybox rootfs into DIR")
    sp.add_argument("dir")
    sp.set_defaults(func=cmd_busybox_rootfs)

    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
