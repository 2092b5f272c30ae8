"""The pipeline report: one set of sections rendered as report.md and a self-contained report.html.

`report.json` (written by the pipeline) is the source; both renderings are built from the
same sections, so the Markdown and the HTML can never disagree. The HTML embeds its images
as data URIs and needs no network or other files.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    preformatted: str = ""
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, path under out_dir)


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _mb(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.2f} MB" if num_bytes >= 1e5 else f"{num_bytes / 1e3:.1f} kB"


def _flip_average_note(report: dict[str, Any]) -> str:
    """What "float model" means in a report of a flip-averaged export ("" otherwise)."""
    if not report.get("flip_average"):
        return ""
    alone = report.get("model_alone_metrics")
    if alone is None:  # export refused the bundle before the averaged model was measured
        return "Asked for test-time flip averaging; these are the trained model's own figures."
    return (
        "Exported with test-time flip averaging: every model averages the probabilities of an "
        "image and its mirror image, and every check below compares with this averaged float "
        f"model. The trained model alone: {_pct(alone['accuracy'])} accuracy."
    )


def _data_text(data: dict[str, Any]) -> str:
    """Which dataset, in what form, what every model takes, and what reading it noted."""
    kind = data.get("kind", "idx")  # reports before issue 48 read Fashion-MNIST only
    source = {"idx": "IDX files", "folder": "a folder per class", "npz": "an .npz file"}[kind]
    notes = "".join(f" Note: {note}." for note in data.get("notes", []))
    return (
        f"{source.capitalize()} at {data['data_dir']}; every model takes "
        f"{data.get('input', '28x28x1 uint8 images')}. Training images were split into train "
        "and validation (stratified, seeded); the test images were used only for evaluation "
        f"and parity.{notes}"
    )


def build_sections(report: dict[str, Any]) -> list[Section]:
    """The report's sections; a pipeline stopped early (`report["failure"]`) has fewer."""
    data, training = report["data"], report["training"]
    float_metrics, int8_metrics = report["float_metrics"], report.get("int8_metrics")
    figures = report["figures"]
    verdict = (
        "PASS: every parity check is within tolerance"
        if report["passed"]
        else "FAIL: at least one parity check is outside tolerance"
    )
    if report.get("failure"):
        verdict += f" ({report['failure']})"
    sections = [
        Section(
            "Summary",
            text=f"{verdict}. Pipeline {'(quick mode) ' if report['quick'] else ''}finished in "
            f"{report['total_seconds']:.0f} s on {report['created_at']}.",
            tables=[
                Table(
                    ["stage", "seconds"],
                    [[name, f"{secs:.1f}"] for name, secs in report["stages"].items()],
                )
            ],
        ),
        Section(
            "Data",
            text=_data_text(data),
            tables=[
                Table(
                    ["split", "images"],
                    [
                        ["train", str(data["train"])],
                        ["validation", str(data["validation"])],
                        ["test", str(data["test"])],
                    ],
                )
            ],
        ),
        Section(
            "Training",
            text=f"{training['parameters']:,} parameters; {training['epochs_run']} epochs "
            f"(best {training['best_epoch']}) in {training['wall_time_s']:.0f} s at "
            f"{training['images_per_s']:.0f} images/s; best validation accuracy "
            f"{_pct(training['best_val_accuracy'])}.",
            images=[("Training curves", figures["training_curves"])],
        ),
        Section(
            "Float model on the test set",
            text=_flip_average_note(report),
            tables=[
                Table(
                    ["accuracy", "macro precision", "macro recall", "macro F1"],
                    [
                        [
                            _pct(float_metrics[k])
                            for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
                        ]
                    ],
                )
            ],
            preformatted=float_metrics["classification_report"],
        ),
        int8_metrics
        and Section(
            "Float vs int8",
            text=f"Int8 TFLite test accuracy {_pct(int8_metrics['accuracy'])}, macro F1 "
            f"{_pct(int8_metrics['macro_f1'])}.",
            tables=[
                Table(
                    ["class", "F1 float", "F1 int8", "delta (pp)"],
                    [
                        [
                            f["class_name"],
                            _pct(f["f1"]),
                            _pct(q["f1"]),
                            f"{(q['f1'] - f['f1']) * 100:+.2f}",
                        ]
                        for f, q in zip(
                            float_metrics["per_class"], int8_metrics["per_class"], strict=True
                        )
                    ],
                )
            ],
            images=[
                ("Confusion matrices: float (left) and int8 TFLite (right)", figures["confusion"]),
                ("Per-class F1, float vs int8", figures["per_class_f1"]),
            ],
        ),
        Section(
            "Parity with the float model",
            text="Each deployed form of the model answers the 10,000 test images; it passes "
            "when the accuracy drop, the top-1 agreement with the float model and the recall "
            "drop of its worst class are within tolerance.",
            tables=[
                Table(
                    [
                        "check",
                        "accuracy",
                        "drop (pp)",
                        "agreement",
                        "max |dp|",
                        "mean |dp|",
                        "worst class recall (float -> candidate, drop pp)",
                        "tolerance",
                        "verdict",
                    ],
                    [
                        [
                            p["name"],
                            _pct(p["candidate_accuracy"]),
                            f"{p['accuracy_drop_pp']:+.2f}",
                            _pct(p["agreement"]),
                            f"{p['max_abs_prob_diff']:.2g}",
                            f"{p['mean_abs_prob_diff']:.2g}",
                            _worst_class(p["per_class"]),
                            f"drop <= {p['tolerance']['max_accuracy_drop_pp']} pp, agreement >= "
                            f"{_pct(p['tolerance']['min_agreement'])}, class recall drop <= "
                            f"{p['tolerance'].get('max_class_recall_drop_pp', 1.0)} pp",
                            "PASS" if p["passed"] else "FAIL: " + "; ".join(p["failures"]),
                        ]
                        for p in report["parity"]
                    ],
                )
            ],
        ),
        report.get("artifacts")
        and Section(
            "Artifacts",
            tables=[
                Table(
                    ["file", "size", "SHA-256"],
                    [
                        [a["name"], _mb(a["bytes"]), a["sha256"][:16] + "..."]
                        for a in report["artifacts"]
                    ],
                )
            ],
        ),
        report.get("latency")
        and Section(
            "Latency",
            text="Medians over repeated requests on this machine, measured side by side in "
            "one run; servers on loopback.",
            tables=[
                Table(
                    ["path", "batch", "p50 (ms)", "p90 (ms)", "images/s"],
                    [
                        [
                            row["path"],
                            str(row["batch"]),
                            f"{row['p50_ms']:.3f}",
                            f"{row['p90_ms']:.3f}",
                            f"{row['images_per_s']:,.0f}",
                        ]
                        for row in report["latency"]
                    ],
                )
            ],
        ),
        previous_version_section(report.get("previous_version")),
        Section(
            "Mistakes",
            images=[("Most confident mistakes of the float model", figures["misclassified"])],
        ),
    ]
    return [section for section in sections if section]


def previous_version_section(previous: dict[str, Any] | None) -> Section | None:
    """`fmnist compare`'s judgement of this version against the previous one, if any."""
    if previous is None:
        return None
    title = f"Against version {previous['previous']}"
    if "error" in previous:
        return Section(title, text=f"Not compared: {previous['error']}")
    verdict = "passes" if previous["passed"] else "fails"
    text = (
        f"This version {verdict} `fmnist compare`'s test-set thresholds against the previous one."
    )
    return Section(title, text=text, preformatted=previous["text"])


def to_markdown(report: dict[str, Any], sections: list[Section]) -> str:
    lines = [f"# {report['title']}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        for table in section.tables:
            lines.append("| " + " | ".join(table.headers) + " |")
            lines.append("|" + "---|" * len(table.headers))
            lines += [
                "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                for row in table.rows
            ]
            lines.append("")
        if section.preformatted:
            lines += ["```", section.preformatted.rstrip(), "```", ""]
        for caption, path in section.images:
            lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; color: #234; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: left; }
th { background: #f2f4f7; }
tr:nth-child(even) td { background: #fafbfc; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .85em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(text: str) -> str:
    escaped = html.escape(text)
    if text == "PASS" or text.startswith("PASS:"):
        return f'<td class="pass">{escaped}</td>'
    if text.startswith("FAIL"):
        return f'<td class="fail">{escaped}</td>'
    return f"<td>{escaped}</td>"


def to_html(report: dict[str, Any], sections: list[Section], out_dir: Path) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report['title'])}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            css = (
                ' class="pass"'
                if section.text.startswith("PASS")
                else ' class="fail"'
                if section.text.startswith("FAIL")
                else ""
            )
            parts.append(f"<p{css}>{html.escape(section.text)}</p>")
        for table in section.tables:
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
                + "</tr></thead><tbody>"
            )
            parts += ["<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows]
            parts.append("</tbody></table>")
        if section.preformatted:
            parts.append(f"<pre>{html.escape(section.preformatted)}</pre>")
        for caption, path in section.images:
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" '
                f'src="{_data_uri(out_dir / path)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, report: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    sections = build_sections(report)
    paths = {
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(to_markdown(report, sections))
    paths["html"].write_text(to_html(report, sections, out_dir))
    return paths


def _worst_class(per_class: list[dict[str, Any]]) -> str:
    """The class whose recall dropped most, e.g. `Shirt 80.10% -> 79.00% (1.10)`."""
    rows = [row for row in per_class if row["support"]]
    if not rows:
        return "n/a"
    worst = min(rows, key=lambda row: row["delta_pp"])
    return (
        f"{worst['class_name']} {_pct(worst['reference_accuracy'])} -> "
        f"{_pct(worst['candidate_accuracy'])} ({-worst['delta_pp'] + 0.0:.2f})"
    )
