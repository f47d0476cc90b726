"""Typed settings: the only module that reads the environment.

Every setting has a default that works on a laptop with the embedded broker, and an
environment variable (named in its ``env`` metadata) for production. The CLI turns its
flags into overrides of these same fields, so a flag, a variable and a default can never
disagree about what a setting means.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

__all__ = ["Settings", "SettingsError", "get_settings", "TABLE_NAMES"]

#: Names of the worker's tables. Persisted contracts: each names a changelog topic
#: ``<app_id>-<name>-changelog`` holding state, so a rename orphans that state.
TABLE_NAMES = ("user_state", "user_profiles")

#: Settings never pickled (see ``Settings.__getstate__``).
SECRET_FIELDS = ("sasl_password", "pseudonym_key")

DEFAULT_TRIGGERS = ("view", "click", "add_to_cart", "recommendation_request")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _env(name: str, help: str) -> dict[str, str]:
    return {"env": name, "help": help}


@dataclass(frozen=True)
class Settings:
    """All of micromoment's knobs. Build with :meth:`from_env`.

    >>> s = Settings.from_env({}, top_k="5", trigger_event_types="view,click")
    >>> s.top_k, sorted(s.trigger_event_types)
    (5, ['click', 'view'])
    >>> s.broker_servers
    ['localhost:9092']
    """

    broker: str = field(default="kafka://localhost:9092", metadata=_env(
        "MICROMOMENT_BROKER", "Kafka bootstrap URL(s), kafka://host:port[;kafka://host2:port]"))
    app_id: str = field(default="micromoment", metadata=_env(
        "MICROMOMENT_APP_ID", "Faust app id: consumer group and prefix of table changelog topics"))
    topic_events: str = field(default="events", metadata=_env(
        "MICROMOMENT_TOPIC_EVENTS", "input topic of user interaction events, keyed by user_id"))
    topic_items: str = field(default="items", metadata=_env(
        "MICROMOMENT_TOPIC_ITEMS", "input topic of catalog upserts, keyed by item_id"))
    topic_users: str = field(default="users", metadata=_env(
        "MICROMOMENT_TOPIC_USERS", "input topic of profile/consent upserts, keyed by user_id"))
    topic_recommendations: str = field(default="recommendations", metadata=_env(
        "MICROMOMENT_TOPIC_RECOMMENDATIONS", "output topic of recommendations, keyed by user_id"))
    topic_dead_letters: str = field(default="dead-letters", metadata=_env(
        "MICROMOMENT_TOPIC_DEAD_LETTERS", "output topic of records that could not be used"))
    topic_decisions: str = field(default="decisions", metadata=_env(
        "MICROMOMENT_TOPIC_DECISIONS", "input topic of decision requests, keyed by user_id"))
    topic_decisions_out: str = field(default="decisions.out", metadata=_env(
        "MICROMOMENT_TOPIC_DECISIONS_OUT", "output topic of decisions, keyed by user_id"))
    topic_rewards: str = field(default="rewards", metadata=_env(
        "MICROMOMENT_TOPIC_REWARDS", "input topic of decision rewards, keyed by the decision's user_id"))
    partitions: int = field(default=4, metadata=_env(
        "MICROMOMENT_PARTITIONS", "partitions of every topic the project creates"))
    replication_factor: int = field(default=1, metadata=_env(
        "MICROMOMENT_REPLICATION_FACTOR", "replication factor of created topics"))
    web_host: str = field(default="127.0.0.1", metadata=_env(
        "MICROMOMENT_WEB_HOST", "address the worker's HTTP server binds to"))
    web_port: int = field(default=6066, metadata=_env(
        "MICROMOMENT_WEB_PORT", "port of the worker's HTTP server"))
    datadir: str = field(default="", metadata=_env(
        "MICROMOMENT_DATADIR", "worker data directory (default: .micromoment/<app_id>-<web_port>)"))
    session_timeout_s: float = field(default=10.0, metadata=_env(
        "MICROMOMENT_SESSION_TIMEOUT", "consumer-group session timeout in seconds"))
    fetch_max_wait_ms: int = field(default=20, metadata=_env(
        "MICROMOMENT_FETCH_MAX_WAIT_MS", "longest a consumer fetch waits for data (latency bound "
        "on brokers that hold fetches, like the embedded one)"))
    producer_linger_ms: int = field(default=2, metadata=_env(
        "MICROMOMENT_PRODUCER_LINGER_MS", "how long the worker's producer waits to batch "
        "changelog writes and outputs into one request (adds up to this to latency)"))
    broker_wait_s: float = field(default=30.0, metadata=_env(
        "MICROMOMENT_BROKER_WAIT", "seconds a command waits for the broker before giving up"))
    security_protocol: str = field(default="PLAINTEXT", metadata=_env(
        "MICROMOMENT_SECURITY_PROTOCOL", "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT "
        "or SASL_SSL (every client: worker, replicator, CLI, admin)"))
    ssl_cafile: str = field(default="", metadata=_env(
        "MICROMOMENT_SSL_CAFILE", "PEM file of the CA(s) that signed the brokers' certificates "
        "(default: the system's CAs)"))
    ssl_certfile: str = field(default="", metadata=_env(
        "MICROMOMENT_SSL_CERTFILE", "PEM client certificate for mutual TLS (may also hold the key)"))
    ssl_keyfile: str = field(default="", metadata=_env(
        "MICROMOMENT_SSL_KEYFILE", "PEM private key of the client certificate (unencrypted)"))
    ssl_check_hostname: bool = field(default=True, metadata=_env(
        "MICROMOMENT_SSL_CHECK_HOSTNAME", "check that the broker's certificate names the host "
        "connected to (the CA is verified either way)"))
    sasl_mechanism: str = field(default="", metadata=_env(
        "MICROMOMENT_SASL_MECHANISM", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
    sasl_username: str = field(default="", metadata=_env(
        "MICROMOMENT_SASL_USERNAME", "SASL username"))
    sasl_password: str = field(default="", repr=False, metadata=_env(
        "MICROMOMENT_SASL_PASSWORD", "SASL password (secret: never printed)"))
    top_k: int = field(default=10, metadata=_env(
        "MICROMOMENT_TOP_K", "items per recommendation"))
    trigger_event_types: frozenset[str] = field(default=frozenset(DEFAULT_TRIGGERS), metadata=_env(
        "MICROMOMENT_TRIGGER_EVENT_TYPES", "comma-separated event types that emit a recommendation"))
    output_format: str = field(default="json", metadata=_env(
        "MICROMOMENT_OUTPUT_FORMAT", "wire format of recommendations and dead-letters: json or avro"))
    recent_items_max: int = field(default=50, metadata=_env(
        "MICROMOMENT_RECENT_ITEMS", "recent items kept in each user's state"))
    dedupe_window: int = field(default=256, metadata=_env(
        "MICROMOMENT_DEDUPE_WINDOW", "event ids remembered per user to drop redeliveries"))
    max_record_bytes: int = field(default=1_000_000, metadata=_env(
        "MICROMOMENT_MAX_RECORD_BYTES", "larger input records are dead-lettered as oversized"))
    max_id_length: int = field(default=256, metadata=_env(
        "MICROMOMENT_MAX_ID_LENGTH", "longest accepted id (event, user, item, recommendation)"))
    max_context_entries: int = field(default=32, metadata=_env(
        "MICROMOMENT_MAX_CONTEXT_ENTRIES", "most entries accepted in a context/attributes map or a "
        "muted list"))
    max_future_skew_s: float = field(default=86_400.0, metadata=_env(
        "MICROMOMENT_MAX_FUTURE_SKEW", "events timestamped further in the future are dead-lettered"))
    min_timestamp_ms: int = field(default=946_684_800_000, metadata=_env(
        "MICROMOMENT_MIN_TIMESTAMP_MS", "events timestamped before this (default 2000-01-01) are dead-lettered"))
    popularity_half_life_s: float = field(default=3_600.0, metadata=_env(
        "MICROMOMENT_POPULARITY_HALF_LIFE", "half-life in seconds of the trending popularity"))
    popularity_pace_events: int = field(default=500, metadata=_env(
        "MICROMOMENT_POPULARITY_PACE_EVENTS", "the popularity half-life is at least the event time "
        "this many events take at the current pace, so slow logs are not forgotten within the "
        "hour (0: always the fixed half-life)"))
    exclude_recent: int = field(default=50, metadata=_env(
        "MICROMOMENT_EXCLUDE_RECENT", "how many of a user's most recent items are never "
        "recommended (0: none, for repeat-consumption domains; purchases are always excluded)"))
    skip_bursts: bool = field(default=True, metadata=_env(
        "MICROMOMENT_SKIP_BURSTS", "do not learn from events the burst detector judges bot-like "
        "(they still update the user's state)"))
    user_ttl_s: float = field(default=2_592_000.0, metadata=_env(
        "MICROMOMENT_USER_TTL", "event-time seconds after which an idle user's learned "
        "parameters (content, segment, context model, rating bias) are dropped"))
    blend_every: int = field(default=16, metadata=_env(
        "MICROMOMENT_BLEND_EVERY", "the learned blend takes a step on every Nth positive event "
        "(each costs a scoring of the catalog; replay uses 1, its scores are at hand)"))
    n_factors: int = field(default=16, metadata=_env(
        "MICROMOMENT_N_FACTORS", "latent factors of the matrix-factorization learner"))
    seed: int = field(default=42, metadata=_env(
        "MICROMOMENT_SEED", "seed of every random choice the learners make"))
    exploration_rate: float = field(default=0.1, metadata=_env(
        "MICROMOMENT_EXPLORATION_RATE", "expected share of list slots the contextual bandit "
        "explores (0: never); only lists served with a recommendation_id explore"))
    diversity: float = field(default=0.2, metadata=_env(
        "MICROMOMENT_DIVERSITY", "MMR lambda of the diversity re-ranking over categories and "
        "item embeddings, 0 (off: relevance order) to 1"))
    exclude_categories: frozenset[str] = field(default=frozenset(), metadata=_env(
        "MICROMOMENT_EXCLUDE_CATEGORIES", "comma-separated item categories never recommended"))
    exclude_item_attributes: frozenset[str] = field(default=frozenset(), metadata=_env(
        "MICROMOMENT_EXCLUDE_ATTRIBUTES", "comma-separated name=value item attributes never "
        "recommended, e.g. adult=true"))
    reward_weights: str = field(default="click:1,add_to_cart:2,purchase:3", metadata=_env(
        "MICROMOMENT_REWARD_WEIGHTS", "rewards of feedback events on a recommended item "
        "(type:weight,...; scaled so the largest is 1; an item counts its largest once)"))
    attribution_window_s: float = field(default=1_800.0, metadata=_env(
        "MICROMOMENT_ATTRIBUTION_WINDOW", "event-time seconds after a recommendation in which "
        "feedback carrying its recommendation_id is a reward; then the rest count zero"))
    max_pending_impressions: int = field(default=20_000, metadata=_env(
        "MICROMOMENT_MAX_PENDING_IMPRESSIONS", "recommendations a worker holds awaiting feedback; "
        "past it the oldest is resolved early"))
    admin_token: str = field(default="", repr=False, metadata=_env(
        "MICROMOMENT_ADMIN_TOKEN", "bearer token required by admin endpoints (DELETE /users/{id}); "
        "without one they answer only when the web server binds to loopback"))
    log_level: str = field(default="info", metadata=_env(
        "MICROMOMENT_LOG_LEVEL", "worker log level"))
    log_format: str = field(default="text", metadata=_env(
        "MICROMOMENT_LOG_FORMAT", "worker log format: text, or json (one object per line)"))
    checkpoint_interval_s: float = field(default=30.0, metadata=_env(
        "MICROMOMENT_CHECKPOINT_INTERVAL", "seconds between learner checkpoints to the "
        "<app_id>-checkpoints topic (0: never checkpoint, always start cold)"))
    worker_id: str = field(default="", metadata=_env(
        "MICROMOMENT_WORKER_ID", "stable name of this worker's checkpoints (default: "
        "<hostname>:<web_port>); a restarted worker restores its own, a new one the newest"))
    pseudonym_key: str = field(default="micromoment", repr=False, metadata=_env(
        "MICROMOMENT_PSEUDONYM_KEY", "secret key of the user-id pseudonyms in logs (set your own)"))
    decision_points: str = field(default="", metadata=_env(
        "MICROMOMENT_DECISION_POINTS", "JSON object (or @file) of decision points' options, e.g. "
        '{"homepage-hero": {"policy": "thompson", "apprentice": true}}; unlisted points use the '
        "defaults below"))
    decision_action_sets: str = field(default="", metadata=_env(
        "MICROMOMENT_DECISION_ACTION_SETS", "JSON object (or @file) of named action sets: "
        '{"hero-images": [{"id": "beach", "features": {"tone": "warm"}}]}'))
    decision_policy: str = field(default="linucb", metadata=_env(
        "MICROMOMENT_DECISION_POLICY", "default policy of a decision point: epsilon-greedy, "
        "softmax, thompson or linucb"))
    decision_exploration: float = field(default=0.05, metadata=_env(
        "MICROMOMENT_DECISION_EXPLORATION", "default exploration rate (epsilon): the share of "
        "uniform exploration every policy mixes in"))
    decision_reward_window_s: float = field(default=600.0, metadata=_env(
        "MICROMOMENT_DECISION_REWARD_WINDOW", "default seconds a decision waits for its reward "
        "before it learns the default reward"))
    decision_default_reward: float = field(default=0.0, metadata=_env(
        "MICROMOMENT_DECISION_DEFAULT_REWARD", "default reward learned when none comes in the window"))
    decision_max_actions: int = field(default=50, metadata=_env(
        "MICROMOMENT_DECISION_MAX_ACTIONS", "most candidate actions in one decision request"))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its secrets (they are blanked).

        Learners keep the settings they were built with, and learner checkpoints pickle
        the learners onto a Kafka topic: a SASL password must not travel with them.

        >>> import pickle
        >>> pickle.loads(pickle.dumps(Settings(sasl_password="s3cret"))).sasl_password
        ''
        """
        state = dict(self.__dict__)
        for name in SECRET_FIELDS:
            state[name] = ""
        return state

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read each field from its variable, then apply ``overrides`` (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = overrides.get(f.name)
            source = f"--{f.name.replace('_', '-')}"
            if raw is None:
                raw, source = environ.get(f.metadata["env"]), f.metadata["env"]
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.default, raw, source)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with some fields changed (already typed values)."""
        return replace(self, **overrides)

    def validate(self) -> None:
        """Reject values no component could work with, naming the variable."""
        if self.checkpoint_interval_s < 0:
            raise SettingsError("MICROMOMENT_CHECKPOINT_INTERVAL must be 0 (off) or positive")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"MICROMOMENT_LOG_FORMAT must be 'text' or 'json', not {self.log_format!r}")
        if self.output_format not in ("json", "avro"):
            raise SettingsError("MICROMOMENT_OUTPUT_FORMAT must be 'json' or 'avro', "
                                f"not {self.output_format!r}")
        for name in ("partitions", "top_k", "recent_items_max", "dedupe_window", "n_factors",
                     "blend_every"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_var(name)} must be at least 1")
        for name in ("popularity_pace_events", "exclude_recent", "producer_linger_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{_var(name)} must not be negative")
        if not self.user_ttl_s > 0:
            raise SettingsError("MICROMOMENT_USER_TTL must be positive")
        from streams.records import EVENT_TYPES

        unknown = sorted(set(self.trigger_event_types) - set(EVENT_TYPES))
        if unknown:
            raise SettingsError(f"MICROMOMENT_TRIGGER_EVENT_TYPES has unknown types {unknown}; "
                                f"known: {', '.join(EVENT_TYPES)}")
        self._validate_ranking()
        self.broker_servers  # parses, raising SettingsError when malformed
        from streams.security import validate_security

        validate_security(self)
        if self.decision_max_actions < 1:
            raise SettingsError("MICROMOMENT_DECISION_MAX_ACTIONS must be at least 1")
        from streams.decisions.config import ConfigError, DecisionConfig

        try:
            from streams.decisions.validation import DecisionValidator

            DecisionValidator(self, DecisionConfig.from_settings(self))  # checks the action sets
        except ConfigError as exc:
            raise SettingsError(str(exc)) from None

    def _validate_ranking(self) -> None:
        """The selection and feedback-loop settings (``streams.rank``)."""
        if not 0.0 <= self.exploration_rate < 1.0:
            raise SettingsError("MICROMOMENT_EXPLORATION_RATE must be at least 0 and below 1")
        if not 0.0 <= self.diversity <= 1.0:
            raise SettingsError("MICROMOMENT_DIVERSITY must be between 0 and 1")
        if not self.attribution_window_s > 0:
            raise SettingsError("MICROMOMENT_ATTRIBUTION_WINDOW must be positive")
        if self.max_pending_impressions < 1:
            raise SettingsError("MICROMOMENT_MAX_PENDING_IMPRESSIONS must be at least 1")
        from streams.rank.feedback import parse_reward_weights
        from streams.rank.items import parse_attribute_rules

        for variable, parse, value in (
            ("MICROMOMENT_REWARD_WEIGHTS", parse_reward_weights, self.reward_weights),
            ("MICROMOMENT_EXCLUDE_ATTRIBUTES", parse_attribute_rules, self.exclude_item_attributes),
        ):
            try:
                parse(value)
            except ValueError as exc:
                raise SettingsError(f"{variable}: {exc}") from None

    @property
    def broker_servers(self) -> list[str]:
        """``host:port`` list for Kafka clients, parsed from :attr:`broker`."""
        servers = []
        for part in self.broker.replace(",", ";").split(";"):
            part = part.strip()
            if not part:
                continue
            if "://" in part:
                scheme, _, part = part.partition("://")
                if scheme != "kafka":
                    raise SettingsError(f"broker URL scheme must be kafka://, got {scheme}://")
            host, sep, port = part.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise SettingsError(f"broker must look like kafka://host:port, got {self.broker!r}")
            servers.append(f"{host}:{port}")
        if not servers:
            raise SettingsError("no broker given (MICROMOMENT_BROKER or --broker)")
        return servers

    @property
    def faust_broker(self) -> str:
        """The broker list for Faust, selecting the ``micromoment`` transport (``streams.transport``)."""
        return ";".join(f"micromoment://{server}" for server in self.broker_servers)

    @property
    def resolved_datadir(self) -> str:
        return self.datadir or os.path.join(".micromoment", f"{self.app_id}-{self.web_port}")

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}:{self.web_port}"

    @property
    def checkpoint_topic(self) -> str:
        """Compacted, one-partition topic of learner checkpoints (``streams.checkpoints``)."""
        return f"{self.app_id}-checkpoints"

    @property
    def changelog_topics(self) -> list[str]:
        """Changelog topics of the worker's tables (Faust names them ``<app>-<table>-changelog``)."""
        return [f"{self.app_id}-{name}-changelog" for name in TABLE_NAMES]


def _var(name: str) -> str:
    return next(f.metadata["env"] for f in fields(Settings) if f.name == name)


def _coerce(name: str, default: Any, raw: Any, source: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            flag = raw.strip().lower()
            if flag not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(flag)
            return flag in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, frozenset):
            return frozenset(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{source} must be a {type(default).__name__}, got {raw!r}") from None
    return raw


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached
