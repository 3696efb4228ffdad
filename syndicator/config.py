"""Configuration: one TOML file, validated once, with paths resolved.

Relative paths in the file are resolved against the directory the file lives
in, so ``syndicator --config /etc/syndicator/syndicator.toml`` works from any
working directory. Secrets (the SMTP password) may come from a ``*_file`` key,
from systemd credentials or from the environment, never only from the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from syndicator.errors import ConfigError
from syndicator.mail.subscribers import check_timezone

DEFAULT_CONFIG_PATHS = (
    Path("/etc/syndicator/syndicator.toml"),
    Path("config/syndicator.toml"),
)
CONFIG_ENV = "SYNDICATOR_CONFIG"
# The gazetteer and the taxonomy shipped inside the package: the defaults of
# classify.regions and classify.topics.
SHIPPED_DATA = Path(__file__).resolve().parent / "data"
SHIPPED_REGIONS = SHIPPED_DATA / "regions.toml"
SHIPPED_TOPICS = SHIPPED_DATA / "topics.toml"
SMTP_PASSWORD_ENV = "SYNDICATOR_SMTP_PASSWORD"  # noqa: S105 - the name of a variable
SMTP_USERNAME_ENV = "SYNDICATOR_SMTP_USERNAME"
IMAP_PASSWORD_ENV = "SYNDICATOR_IMAP_PASSWORD"  # noqa: S105 - the name of a variable

_HEADER_UNSAFE = re.compile(r"[\r\n\x00\u2028\u2029\x85]")


def _none_if_empty(value: Any) -> Any:
    """An empty string in an optional file key means "no file"."""
    return None if value == "" else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SiteConfig(_Section):
    title: Annotated[str, Field(min_length=1, max_length=200)] = "WCO News"
    base_url: str = "http://127.0.0.1:8080/"
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    description: str = "Customs news by region and topic"

    @field_validator("title", "description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _HEADER_UNSAFE.search(value):
            raise ValueError("must be a single line (no line breaks or NUL)")
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(
                f"{value!r} is not an absolute http(s) URL, e.g. 'https://news.example.org/'"
            )
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value if value.endswith("/") else value + "/"


class StoreConfig(_Section):
    path: Path = Path("../articles")
    reload_interval: Annotated[int, Field(gt=0, le=7 * 24 * 3600)] = 300
    watch: bool = False


class FeedsConfig(_Section):
    output_dir: Path = Path("../feeds")
    max_items: Annotated[int, Field(gt=0, le=10_000)] = 50
    # Entries per archive page (RFC 5005); 0: no archives.
    archive_size: Annotated[int, Field(ge=0, le=1_000)] = 100
    # Seconds feed readers are told to cache feeds and pages (Cache-Control max-age); 0:
    # store.reload_interval, since nothing changes faster.
    cache_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 0
    # Answer 429 to a client polling one feed more than this many times per
    # store.reload_interval (0: never).
    polls_per_interval: Annotated[int, Field(ge=0, le=10_000)] = 0
    websub_hub: str = ""
    tag_authority: Annotated[
        str, Field(pattern=r"^([A-Za-z0-9.-]+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)?$")
    ] = ""
    tag_date: Annotated[str, Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")] = "2026"

    @field_validator("websub_hub")
    @classmethod
    def _hub_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise ValueError(f"{value!r} is not an absolute http(s) URL")
        return value


class StateConfig(_Section):
    url: str = "sqlite:///../state/syndicator.db"


class SmtpConfig(_Section):
    host: str = "localhost"
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password_file: Path | None = None
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    pool_size: Annotated[int, Field(gt=0, le=64)] = 4

    @field_validator("password_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return _none_if_empty(value)


class DkimConfig(_Section):
    """DKIM signing of every message (off while ``domain`` is empty)."""

    domain: Annotated[str, Field(pattern=r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?$")] = ""
    selector: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$")] = ""
    key_file: Path | None = None

    @field_validator("key_file", mode="before")
    @classmethod
    def _no_key_file(cls, value: Any) -> Any:
        return _none_if_empty(value)

    @property
    def enabled(self) -> bool:
        return bool(self.domain)


class MailConfig(_Section):
    from_: Annotated[str, Field(alias="from")] = "WCO News <news@example.org>"
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("../mail")
    list_id: Annotated[str, Field(pattern=r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?$")] = ""
    unsubscribe_secret_file: Path | None = None
    # Envelope sender of every message, as local+token@domain (VERP); empty: the address
    # of mail.from, the same for every message.
    bounce_address: str = ""
    # Messages per second: "*" for all mail together, a domain for its recipients.
    rate_limits: dict[str, Annotated[float, Field(gt=0, le=100_000)]] = {}
    smtp: SmtpConfig = SmtpConfig()
    dkim: DkimConfig = DkimConfig()

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str) -> str:
        if not value:
            return value
        local, at, domain = value.rpartition("@")
        if not at or not local or ("." not in domain and domain != "localhost"):
            raise ValueError(f"{value!r} is not an address, e.g. 'bounces@news.example.org'")
        if "+" in local or any(c.isspace() or c in '<>"' for c in value):
            raise ValueError(f"{value!r} must be a plain address with no '+', spaces or quotes")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _domains(cls, value: dict[str, float]) -> dict[str, float]:
        for domain in value:
            if domain != "*" and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", domain):
                raise ValueError(f"{domain!r} is neither '*' nor a domain, e.g. 'gmail.com'")
        return {domain.lower(): rate for domain, rate in value.items()}

    @field_validator("unsubscribe_secret_file", mode="before")
    @classmethod
    def _no_secret_file(cls, value: Any) -> Any:
        return _none_if_empty(value)

    @field_validator("from_")
    @classmethod
    def _address(cls, value: str) -> str:
        if _HEADER_UNSAFE.search(value):
            raise ValueError("must be a single line (no line breaks or NUL)")
        if "@" not in value:
            raise ValueError(f"{value!r} is not an address, e.g. 'WCO News <news@example.org>'")
        return value


class ImapConfig(_Section):
    """A mailbox of bounces and complaints on an IMAP server."""

    host: str = ""
    port: Annotated[int, Field(gt=0, lt=65536)] = 993
    security: Literal["tls", "starttls"] = "tls"
    username: str = ""
    password_file: Path | None = None
    mailbox: str = "INBOX"
    # Where processed messages go; empty: they stay, flagged \\Seen and $Processed.
    move_to: str = ""
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0

    @field_validator("password_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return _none_if_empty(value)


class BouncesConfig(_Section):
    """Where bounces and complaints arrive, and what they do."""

    maildir: Path | None = None
    imap: ImapConfig = ImapConfig()
    # Soft bounces (4.x.x) that suspend a subscriber when they come within soft_days.
    soft_limit: Annotated[int, Field(gt=0, le=1000)] = 5
    soft_days: Annotated[int, Field(gt=0, le=365)] = 14
    # The circuit breaker: over the last `window` messages sent, once at least
    # `min_messages` were, sending pauses past these rates.
    max_bounce_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    max_complaint_rate: Annotated[float, Field(gt=0, le=1)] = 0.003
    window: Annotated[int, Field(gt=0, le=1_000_000)] = 1000
    min_messages: Annotated[int, Field(gt=0, le=1_000_000)] = 200

    @field_validator("maildir", mode="before")
    @classmethod
    def _no_maildir(cls, value: Any) -> Any:
        return _none_if_empty(value)


class HttpConfig(_Section):
    enabled: bool = True
    listen: str = "127.0.0.1:8080"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT, e.g. '127.0.0.1:8080' or '[::1]:8080'")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class WebConfig(_Section):
    """The self-service subscription pages: subscribe, confirm, manage."""

    subscribe: bool = True
    confirm_ttl_hours: Annotated[int, Field(gt=0, le=30 * 24)] = 48
    # Token buckets, refilled evenly over the hour; 0 turns a limit off.
    subscribe_per_hour_per_client: Annotated[int, Field(ge=0, le=100_000)] = 10
    subscribe_per_hour_per_email: Annotated[int, Field(ge=0, le=1_000)] = 3
    changes_per_hour_per_client: Annotated[int, Field(ge=0, le=100_000)] = 60
    # Behind a reverse proxy every request comes from the proxy: take the client's address
    # from the last X-Forwarded-For entry (the one the proxy appended) instead.
    trust_forwarded_for: bool = False
    # The time zone the forms propose first (an IANA name such as "Europe/Brussels").
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


class ServiceConfig(_Section):
    """This instance among those sharing one state database."""

    # Empty: "host:pid". Shown by `syndicator status`; the owner of the messages it sends.
    instance_id: Annotated[str, Field(max_length=200, pattern=r"^[^\s]*$")] = ""
    # What this instance does: run the cycle, deliver mail, serve HTTP.
    roles: tuple[Literal["cycle", "deliver", "web"], ...] = ("cycle", "deliver", "web")
    # How long a claim on a message being sent holds; past it, another instance sends it.
    lease_seconds: Annotated[int, Field(ge=5, le=3600)] = 60
    # Seconds between heartbeats (an instance silent for three of them counts as gone).
    heartbeat_seconds: Annotated[int, Field(ge=1, le=600)] = 10

    @field_validator("roles")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("list each role once")
        return value


class SubscribersConfig(_Section):
    file: Path = Path("subscribers.toml")


class ClassifyConfig(_Section):
    """The gazetteer and the taxonomy; a file named here replaces the shipped one whole."""

    regions: Path = SHIPPED_REGIONS
    topics: Path = SHIPPED_TOPICS
    # Editors' corrections (see syndicator.classify.corrections); none when unset.
    corrections: Path | None = None

    @field_validator("regions", mode="before")
    @classmethod
    def _shipped_regions(cls, value: Any) -> Any:
        return SHIPPED_REGIONS if value == "" else value

    @field_validator("topics", mode="before")
    @classmethod
    def _shipped_topics(cls, value: Any) -> Any:
        return SHIPPED_TOPICS if value == "" else value

    @property
    def shipped_regions(self) -> bool:
        return self.regions == SHIPPED_REGIONS

    @property
    def shipped_topics(self) -> bool:
        return self.topics == SHIPPED_TOPICS


class Config(_Section):
    """The whole configuration, with every path absolute."""

    site: SiteConfig = SiteConfig()
    store: StoreConfig = StoreConfig()
    feeds: FeedsConfig = FeedsConfig()
    state: StateConfig = StateConfig()
    mail: MailConfig = MailConfig()
    bounces: BouncesConfig = BouncesConfig()
    http: HttpConfig = HttpConfig()
    web: WebConfig = WebConfig()
    service: ServiceConfig = ServiceConfig()
    subscribers: SubscribersConfig = SubscribersConfig()
    classify: ClassifyConfig = ClassifyConfig()
    source: Path | None = Field(default=None, exclude=True)

    def smtp_password(self, environ: dict[str, str] | None = None) -> str:
        """The SMTP password: environment, then systemd credential, then ``password_file``."""
        return self._secret(
            environ,
            SMTP_PASSWORD_ENV,
            "smtp-password",
            self.mail.smtp.password_file,
            "mail.smtp.password_file",
        )

    def _secret(
        self,
        environ: dict[str, str] | None,
        variable: str,
        credential: str,
        password_file: Path | None,
        key: str,
    ) -> str:
        """A password from ``$variable``, else the systemd credential ``credential``, else
        ``password_file`` (empty when none is given)."""
        env = os.environ if environ is None else environ
        if env.get(variable):
            return env[variable]
        credentials = env.get("CREDENTIALS_DIRECTORY")
        if credentials and (Path(credentials) / credential).is_file():
            return (Path(credentials) / credential).read_text(encoding="utf-8").strip()
        if password_file is None:
            return ""
        try:
            return password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {password_file}: {exc.strerror}", path=self.source, key=key
            ) from exc

    @property
    def tag_authority(self) -> str:
        """The authority of tag: URIs: ``feeds.tag_authority``, else the host of ``base_url``."""
        return self.feeds.tag_authority or (urlsplit(self.site.base_url).hostname or "localhost")

    @property
    def subscriptions_enabled(self) -> bool:
        """Whether the built-in HTTP server offers the subscribe and manage pages."""
        return self.http.enabled and self.web.subscribe

    @property
    def list_id(self) -> str:
        """``mail.list_id``, else "news." + the host of ``base_url``."""
        return self.mail.list_id or f"news.{urlsplit(self.site.base_url).hostname or 'localhost'}"

    def imap_password(self, environ: dict[str, str] | None = None) -> str:
        """The IMAP password: environment, then systemd credential, then ``password_file``."""
        return self._secret(
            environ,
            IMAP_PASSWORD_ENV,
            "imap-password",
            self.bounces.imap.password_file,
            "bounces.imap.password_file",
        )

    def smtp_username(self, environ: dict[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return env.get(SMTP_USERNAME_ENV) or self.mail.smtp.username


def default_config_path(environ: dict[str, str] | None = None) -> Path:
    """``$SYNDICATOR_CONFIG``, else the first of the default paths that exists."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG_PATHS[-1]


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_sqlite_url(base: Path, url: str) -> str:
    """Make the file path of a ``sqlite:///relative/path`` URL absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith("sqlite:////"):
        return url
    rest = url[len(prefix) :]
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:":
        return url
    return f"{prefix}{_resolve(base, Path(path))}{sep}{query}"


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best guess at the line of ``section.key`` in a TOML text, for error messages."""
    keys = [str(part) for part in loc if isinstance(part, str)]
    if not keys:
        return None
    section, key = keys[:-1], keys[-1]
    current: list[str] = []
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
    assignment = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if match := header.match(line):
            current = [part.strip().strip("\"'") for part in match.group(1).split(".")]
            if current == keys:
                return number
            continue
        match = assignment.match(line)
        if match and current == section and match.group(1).strip("\"'") == key:
            return number
    if section:
        return _line_of(text, tuple(section))
    return None


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc)


def load_config(path: Path) -> Config:
    """Read, validate and resolve the configuration file at ``path``.

    Raises :class:`ConfigError` naming the file, line and key of the first problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            "configuration file not found",
            path=path,
            hint="pass --config PATH or set SYNDICATOR_CONFIG",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration: {exc}", path=path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"invalid TOML: {message}", path=path, line=line) from exc
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the README's configuration reference)"
        raise ConfigError(message, path=path, line=_line_of(text, loc), key=_key_path(loc)) from exc
    base = path.resolve().parent
    return config.model_copy(
        update={
            "source": path,
            "store": config.store.model_copy(update={"path": _resolve(base, config.store.path)}),
            "feeds": config.feeds.model_copy(
                update={"output_dir": _resolve(base, config.feeds.output_dir)}
            ),
            "state": config.state.model_copy(
                update={"url": _resolve_sqlite_url(base, config.state.url)}
            ),
            "mail": config.mail.model_copy(
                update={
                    "maildir": _resolve(base, config.mail.maildir),
                    "unsubscribe_secret_file": _resolve(base, config.mail.unsubscribe_secret_file)
                    if config.mail.unsubscribe_secret_file
                    else None,
                    "dkim": config.mail.dkim.model_copy(
                        update={
                            "key_file": _resolve(base, config.mail.dkim.key_file)
                            if config.mail.dkim.key_file
                            else None
                        }
                    ),
                    "smtp": config.mail.smtp.model_copy(
                        update={
                            "password_file": _resolve(base, config.mail.smtp.password_file)
                            if config.mail.smtp.password_file
                            else None
                        }
                    ),
                }
            ),
            "bounces": config.bounces.model_copy(
                update={
                    "maildir": _resolve(base, config.bounces.maildir)
                    if config.bounces.maildir
                    else None,
                    "imap": config.bounces.imap.model_copy(
                        update={
                            "password_file": _resolve(base, config.bounces.imap.password_file)
                            if config.bounces.imap.password_file
                            else None
                        }
                    ),
                }
            ),
            "subscribers": config.subscribers.model_copy(
                update={"file": _resolve(base, config.subscribers.file)}
            ),
            "classify": config.classify.model_copy(
                update={
                    "regions": _resolve(base, config.classify.regions),
                    "topics": _resolve(base, config.classify.topics),
                    "corrections": (
                        _resolve(base, config.classify.corrections)
                        if config.classify.corrections
                        else None
                    ),
                }
            ),
        }
    )
