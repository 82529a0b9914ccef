"""Table cells as text: a missing value is an empty cell, whatever pandas' string dtype does
(pandas 3's astype(str) keeps NaN as a float, which broke the report on the GPU machine)."""

import numpy as np
import pandas as pd

from inferbench.reporting.tables import as_text, html_table, markdown_table


def frame_with_gaps() -> pd.DataFrame:
    return pd.DataFrame({"backend": ["pytorch", "onnxruntime"], "img/s": [38505.2, np.nan], "note": [None, "skipped"]})


def test_missing_values_become_empty_cells():
    assert as_text(frame_with_gaps()).values.tolist() == [["pytorch", "38505.2", ""], ["onnxruntime", "", "skipped"]]


def test_html_and_markdown_tables_render_gaps_as_empty():
    html = html_table(frame_with_gaps())
    assert "nan" not in html.lower() and "None" not in html and '<td class="notok">skipped</td>' in html
    md = markdown_table(frame_with_gaps(), index=False)
    assert "nan" not in md.lower() and "None" not in md
