"""Execute parameterized notebooks with papermill and export them to standalone HTML."""

from __future__ import annotations

from pathlib import Path

from bridge import paths

KERNEL = "bridge"


def execute_notebook(name: str, out_dir: Path, parameters: dict, kernel: str = KERNEL) -> list[Path]:
    """Run ``notebooks/<name>.ipynb`` into ``out_dir`` and export HTML beside it.

    Returns
    -------
    list of Path
        The executed ``.ipynb`` and the ``.html`` (plotly.js embedded: opens offline).
    """
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    root = paths.project_root()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = root / "notebooks" / f"{name}.ipynb"
    nb_out = out_dir / f"{name}.ipynb"
    pm.execute_notebook(str(src), str(nb_out), parameters=parameters, kernel_name=kernel,
                        cwd=str(root / "notebooks"), progress_bar=False)
    body, _ = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(
        nbformat.read(nb_out, as_version=4))
    html = out_dir / f"{name}.html"
    html.write_text(body, encoding="utf-8")
    return [nb_out, html]
