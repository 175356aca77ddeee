"""The end-of-pipeline summary: what was compared, promoted, published and replayed.

:class:`PipelineSummary` is what ``pipeline_flow`` returns; :func:`render_summary` prints it
for ``dynamargin demo`` and ``dynamargin run pipeline``, ending with where to look next.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pipelines.flows.backtest import BacktestOutput
    from pipelines.flows.featurize import FeaturesOutput
    from pipelines.flows.ingest import IngestSummary
    from pipelines.flows.publish import PublishOutput
    from pipelines.flows.review import ReviewOutput
    from pipelines.flows.train import TrainOutput


@dataclass(frozen=True)
class PipelineSummary:
    """Outputs of every step of one pipeline run."""

    workdir: str
    ingest: IngestSummary
    features: FeaturesOutput
    train: TrainOutput
    review: ReviewOutput
    publish: PublishOutput
    backtest: BacktestOutput | None
    mlflow_uri: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return asdict(self)


def render_summary(summary: PipelineSummary, console: Console | None = None) -> None:
    """Print the summary tables and the next steps."""
    console = console or Console()
    f, t, r, p = summary.features, summary.train, summary.review, summary.publish
    console.rule("[bold]dynamargin pipeline summary")
    console.print(
        f"data: {summary.ingest.source}; {len(f.assets)} assets, {f.rows} feature rows, "
        f"{f.data_start} .. {f.data_through}"
    )
    models = Table(
        title="Models compared: mean QLIKE (lower is better)",
        caption=f"walk-forward test {t.test_start[:10]} .. {t.test_end[:10]}",
    )
    models.add_column("model")
    models.add_column("QLIKE", justify="right")
    models.add_column("")
    for name, value in sorted(t.mean_qlike.items(), key=lambda kv: kv[1]):
        models.add_row(name, f"{value:.4f}", "candidate" if name == t.candidate else "")
    console.print(models)
    if t.candidate_reason:
        console.print(f"candidate: {t.candidate} ({t.candidate_reason})")

    gates = Table(title=f"{r.model_name} v{r.version}: review gates")
    gates.add_column("gate")
    gates.add_column("result")
    gates.add_column("detail", overflow="fold")
    for gate in r.gates:
        gates.add_row(
            gate["name"], "[green]PASS[/]" if gate["passed"] else "[red]FAIL[/]", gate["summary"]
        )
    console.print(gates)
    champion = f"v{r.champion}" if r.champion else "[red]none[/] (fallback multipliers)"
    console.print(f"decision: {r.decision}; @champion: {champion}")

    published = Table(title=f"Batch {p.batch_id} published {p.published_at} from {p.source}")
    for column in ("asset", "status", "multiplier", "previous", "sigma 24h", "reason"):
        published.add_column(
            column, justify="right" if column in ("multiplier", "previous", "sigma 24h") else "left"
        )
    for row in p.assets:
        status = row["status"] if row["status"] == "ok" else f"[yellow]{row['status']}[/]"
        published.add_row(
            row["asset"],
            status,
            f"{row['multiplier']:.3f}",
            f"{row['previous']:.3f}",
            f"{row['sigma']:.4f}",
            row["reason"],
        )
    console.print(published)
    console.print(f"source: {p.note}")

    if summary.backtest is not None:
        replay = Table(
            title=f"Replay {summary.backtest.window[0][:10]} .. "
            f"{summary.backtest.window[1][:10]}: policy / static at equal mean margin"
        )
        replay.add_column("policy")
        metrics = sorted({m for v in summary.backtest.headline.values() for m in v})
        for metric in metrics:
            replay.add_column(metric, justify="right")
        for name, values in summary.backtest.headline.items():
            replay.add_row(name, *[_ratio(values.get(m)) for m in metrics])
        console.print(replay)
    console.print(next_steps(summary))


def next_steps(summary: PipelineSummary) -> str:
    """Where to look next: MLflow UI, reports, the API, the Prefect UI."""
    workdir = shlex.quote(summary.workdir)
    lines = [
        "[bold]Next:[/]",
        f"  MLflow UI:       dynamargin --workdir {workdir} ui mlflow",
        f"                   (store {summary.mlflow_uri})",
        f"  review report:   {summary.review.report_html}",
        f"                   {summary.review.report_markdown}",
        f"  review gates:    dynamargin --workdir {workdir} review show {summary.review.version}",
    ]
    if summary.backtest is not None:
        lines.append(f"  replay summary:  {summary.backtest.summary_path}")
    lines += [
        f"  snapshots:       dynamargin --workdir {workdir} snapshots show "
        f"{summary.publish.assets[0]['asset'] if summary.publish.assets else 'BTCUSDT'}",
        f"  serve the API:   dynamargin --workdir {workdir} serve",
    ]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
