"""Server-side TLS from PEM files: gRPC credentials and the HTTP side's ``SSLContext``.

``--tls-cert``/``--tls-key`` turn TLS on for both listeners; ``--tls-client-ca`` also
requires every gRPC client to present a certificate signed by that CA (mutual TLS). The HTTP
side asks for a client certificate but does not require one, so that health probes work
without one; ``/metrics`` then takes an admin certificate or an admin token.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    client_ca_file: str = ""

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )

    def http_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def check(self) -> None:
        """Fail early (ValueError naming the flag) when a file cannot be used."""
        for flag, path in (
            ("--tls-cert", self.cert_file),
            ("--tls-key", self.key_file),
            ("--tls-client-ca", self.client_ca_file),
        ):
            if path and not Path(path).is_file():
                raise ValueError(f"{flag} {path}: no such file")
        try:
            self.http_context()
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"--tls-cert/--tls-key/--tls-client-ca: {exc}") from None
