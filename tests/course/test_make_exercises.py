"""tools/make_exercises.py: solutions/ -> notebooks/ (regions blanked, outputs cleared, cells tagged)."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import load_fixture
from nbformat.v4 import new_code_cell, new_markdown_cell

demo = load_fixture("demo_course")
mx = demo.load_tool()


def generate(*sources: str, name: str = "03_x.ipynb") -> nbformat.NotebookNode:
    return mx.generate(demo.notebook([new_code_cell(source) for source in sources]), name)


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def meta(cell) -> dict:
    return dict(cell.metadata.get("minirims", {}))


# ------------------------------------------------------------------------------------------ blanking


def test_regions_are_replaced_keeping_indentation_and_numbered_by_notebook():
    nb = mx.generate(demo.solution(), "02_demo.ipynb")
    sources = [cell.source for cell in nb.cells]
    assert sources[3] == (
        "# Exercise: return twice x\ndef double(x):\n"
        '    raise NotImplementedError("Exercise 2.1: return twice x")'
    )
    assert sources[6] == (
        '# Exercise: set `profile` to the value of the "MINIRIMS_PROFILE" environment variable\n'
        'raise NotImplementedError("Exercise 2.2: set `profile` to the value of the \\"MINIRIMS_PROFILE\\" '
        'environment variable")\ncheck_profile(profile)'
    )
    assert sources[7].endswith(
        "    def step(self, by=1):\n"
        '        raise NotImplementedError("Exercise 2.3: '
        'complete Counter.step so that it adds `by` to the count")'
    )
    exercises = {
        index: meta(cell)["exercise"] for index, cell in enumerate(nb.cells) if "exercise" in meta(cell)
    }
    assert exercises == {3: "2.1", 6: "2.2", 7: "2.3"}
    # the message is the exercise text, exactly, and the cell is still valid Python
    raised = [node for node in ast.walk(ast.parse(sources[6])) if isinstance(node, ast.Raise)][0]
    assert ast.literal_eval(raised.exc.args[0]) == (
        'Exercise 2.2: set `profile` to the value of the "MINIRIMS_PROFILE" environment variable'
    )
    # nothing of the answers is left
    assert not any("2 * x" in s or "self.count += by" in s or "os.environ[" in s for s in sources[3:])


def test_number_comes_from_the_two_digit_prefix_and_code_after_the_region_stays():
    nb = generate(
        "# Exercise: a\nx = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\nz = 3\n",
        "# Exercise: b\ndef f():\n\t### BEGIN SOLUTION\n\tpass\n\t### END SOLUTION",
        name="11_eleven.ipynb",
    )
    assert (
        nb.cells[0].source == '# Exercise: a\nx = 1\nraise NotImplementedError("Exercise 11.1: a")\nz = 3\n'
    )
    assert nb.cells[1].source == '# Exercise: b\ndef f():\n\traise NotImplementedError("Exercise 11.2: b")'


def test_outputs_counts_and_timing_metadata_are_cleared_but_the_rest_is_kept():
    solution = demo.solution()
    solution.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    solution.cells[2].metadata["execution"] = {"iopub.status.idle": "2024-01-01T00:00:00"}
    solution.cells[2].metadata["tags"] = ["hide-input"]
    solution.cells[1].execution_count = 1
    solution.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "1"})]
    before = copy.deepcopy(solution)
    nb = mx.generate(solution, "02_demo.ipynb")
    assert solution == before  # the solution is not modified
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert nb.cells[2].metadata == {"tags": ["hide-input"]}
    assert nb.cells[0] == solution.cells[0] and nb.cells[-1] == solution.cells[-1]  # markdown copied as is
    assert [cell.id for cell in nb.cells] == [cell.id for cell in solution.cells]
    assert nb.metadata == {key: value for key, value in solution.metadata.items() if key != "widgets"}
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_nbval_tags_of_the_solution_are_kept_beside_raises_exception():
    solution = demo.notebook(
        [
            new_code_cell(
                "# Exercise: f\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
            ),
            new_code_cell("check_f(f)", metadata={"tags": ["nbval-check-output"]}),
            new_code_cell("print(2)", metadata={"tags": ["nbval-check-output"]}),
        ]
    )
    nb = mx.generate(solution, "03_x.ipynb")
    assert tags(nb.cells[1]) == ["nbval-check-output", "raises-exception"]
    assert tags(nb.cells[2]) == ["nbval-check-output"]


# ------------------------------------------------------------------------------------------ tags


def test_demo_tags_exercise_and_check_cells_only():
    nb = mx.generate(demo.solution(), "02_demo.ipynb")
    tagged = [index for index, cell in enumerate(nb.cells) if "raises-exception" in tags(cell)]
    # 6: the top-level exercise (and its check); 4, 8: the checks. Not 3/7 (defs), 5 (reference), 1 (magics).
    assert tagged == [4, 6, 8]
    assert [meta(nb.cells[i]).get("check") for i in (4, 6, 8)] == ["2.1", "2.2", "2.3"]
    assert meta(nb.cells[6]) == {"exercise": "2.2", "check": "2.2"}


def test_callers_are_tagged_transitively_and_reference_rebinding_untags():
    nb = generate(
        "import math\n%matplotlib inline\n!pip list",
        "# Exercise: attention\ndef attention(q):\n"
        "    ### BEGIN SOLUTION\n    return q\n    ### END SOLUTION",
        "checks.check_attention(attention)",
        "def twice(q):\n    return attention(attention(q))",  # defines a caller: does not run it
        "out = twice(1)\nprint('done')\nlast = 3",  # runs it: tagged; out and last may be unset
        "print(out)",
        "print(last)",
        "print(math.pi)",
        "from minirims.attention import scaled_dot_product_attention as attention\nout = attention(2)",
        "print(attention(out))",
        "results = {}",
        "results['x'] = twice(3)",
        "print(results)",
        "for i in range(2):\n    if i:\n        %time twice(i)",
    )
    tagged = [index for index, cell in enumerate(nb.cells) if "raises-exception" in tags(cell)]
    assert tagged == [2, 4, 5, 6, 11, 12, 13]
    assert meta(nb.cells[2]) == {"check": "3.1"}
    assert not meta(nb.cells[4])  # no check_* call


def test_top_level_region_taints_what_the_cell_binds_afterwards():
    nb = generate(
        "w = 0",
        "# Exercise: build w\n### BEGIN SOLUTION\nw = 1\n### END SOLUTION\nv = 2",
        "print(v)",
        "w = 5\nprint(w)",
        "print(w)",
    )
    assert [("raises-exception" in tags(cell)) for cell in nb.cells] == [False, True, True, False, False]


def test_region_in_a_function_inside_a_loop_or_class_body_decides_eagerness():
    nb = generate(
        "# Exercise: e\nfor i in range(2):\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION",
        "# Exercise: f\nclass A:\n    x = 1\n    def f(self):\n        ### BEGIN SOLUTION\n        pass\n"
        "        ### END SOLUTION",
        "# Exercise: g\nclass B:\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION",
        "# Exercise: h\nf = lambda: 1\ndef g():\n"
        "    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\ny = g()",
    )
    assert [("raises-exception" in tags(cell)) for cell in nb.cells] == [True, False, True, True]


def test_check_metadata_names_the_checked_exercises():
    nb = generate(
        "# Exercise: a\ndef a():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
        "# Exercise: b\ndef b():\n    ### BEGIN SOLUTION\n    return a()\n    ### END SOLUTION\ncheck_b(b)",
        "check_a(a)\nchecks.check_b(b)",
        "check_a(a)\nprint(b)",
        "x = a()\ncheck_sum(b, x)",
    )
    assert meta(nb.cells[1]) == {"exercise": "3.2", "check": "3.2"}
    assert "raises-exception" in tags(nb.cells[1])
    assert meta(nb.cells[2]) == {"check": ["3.1", "3.2"]}
    assert meta(nb.cells[3]) == {"check": "3.1"}
    assert meta(nb.cells[4]) == {"check": "3.2"}  # the latest exercise it depends on


def test_existing_raises_exception_tag_is_kept_once():
    solution = demo.notebook(
        [new_code_cell("raise ValueError('demo')", metadata={"tags": ["raises-exception"]})]
    )
    nb = mx.generate(solution, "01_a.ipynb")
    assert nb.cells[0].metadata == {"tags": ["raises-exception"]}


def test_cell_magic_with_a_foreign_body_is_not_parsed():
    nb = generate("%%bash\necho $((1 + 2))\nif [ x ]; then echo; fi", "%%time\nx = 1")
    assert all(not cell.metadata for cell in nb.cells)


# ------------------------------------------------------------------------------------------ rejections

BAD = {
    "unclosed": ("# Exercise: x\n### BEGIN SOLUTION\nx = 1", "line 2: '### BEGIN SOLUTION' is never closed"),
    "unopened": ("# Exercise: x\nx = 1\n### END SOLUTION", "line 3: '### END SOLUTION' without"),
    "nested": (
        "# Exercise: x\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
        "line 3: nested",
    ),
    "no exercise line": (
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        "without an '# Exercise: <what to do>'",
    ),
    "exercise line after": (
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n# Exercise: x",
        "without an '# Exercise",
    ),
    "empty exercise line": (
        "# Exercise:\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        "without a description",
    ),
    "two regions": (
        "# Exercise: x\n### BEGIN SOLUTION\n### END SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
        "2 solution regions",
    ),
    "exercise without region": ("# Exercise: x\nx = 1", "no '### BEGIN SOLUTION'"),
    "malformed marker": (
        "# Exercise: x\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION",
        "malformed solution marker",
    ),
    "syntax error": ("x = (", "not valid Python"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_solutions_are_rejected_naming_file_and_cell_and_nothing_is_written(case, tmp_path, capsys):
    source, message = BAD[case]
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    demo.write(demo.solution(), src / "01_good.ipynb")
    demo.write(demo.notebook([new_markdown_cell("intro"), new_code_cell(source)]), src / "04_bad.ipynb")
    assert mx.main(["--src", str(src), "--dst", str(dst)]) == 1
    err = capsys.readouterr().err
    assert "04_bad.ipynb, cell 2" in err and message in err, err
    assert not dst.exists()


def test_markers_in_markdown_are_rejected(tmp_path, capsys):
    src = tmp_path / "solutions"
    demo.write(demo.notebook([new_markdown_cell("x\n### BEGIN SOLUTION\ny")]), src / "05_md.ipynb")
    assert mx.main(["--src", str(src), "--dst", str(tmp_path / "out")]) == 1
    assert "05_md.ipynb, cell 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ files, --check


def _course(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    demo.write(demo.solution(), src / "02_demo.ipynb")
    demo.write(demo.notebook([new_markdown_cell("# Tour")]), src / "00_tour.ipynb")
    (src / "scratch.ipynb").write_text("not a notebook")  # ignored: no two-digit prefix
    return src, dst


def test_write_then_check_round_trip(tmp_path, capsys):
    src, dst = _course(tmp_path)
    assert mx.main(["--check", "--src", str(src), "--dst", str(dst)]) == 1
    assert "02_demo.ipynb: missing" in capsys.readouterr().err
    assert mx.main(["--src", str(src), "--dst", str(dst)]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["00_tour.ipynb", "02_demo.ipynb"]
    text = (dst / "02_demo.ipynb").read_text()
    assert text.endswith("}\n") and text == mx.render(nbformat.reads(text, as_version=4))
    assert mx.main(["--check", "--src", str(src), "--dst", str(dst)]) == 0
    # idempotent: a second run changes nothing
    capsys.readouterr()
    assert mx.main(["--src", str(src), "--dst", str(dst)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (dst / "02_demo.ipynb").read_text() == text


def test_check_fails_listing_differing_missing_and_extra_notebooks(tmp_path, capsys):
    src, dst = _course(tmp_path)
    mx.main(["--src", str(src), "--dst", str(dst)])
    nb = nbformat.read(dst / "02_demo.ipynb", as_version=4)
    nb.cells[3].source = nb.cells[3].source.replace("raise NotImplementedError", "return 2 * x  #")
    nbformat.write(nb, dst / "02_demo.ipynb")
    (dst / "00_tour.ipynb").unlink()
    demo.write(demo.notebook([]), dst / "09_old.ipynb")
    capsys.readouterr()
    assert mx.main(["--check", "--src", str(src), "--dst", str(dst)]) == 1
    err = capsys.readouterr().err
    assert "02_demo.ipynb: out of date (cell 4 differs)" in err
    assert "00_tour.ipynb: missing" in err
    assert "09_old.ipynb: extra" in err
    # writing repairs all three, removing the stale notebook
    assert mx.main(["--src", str(src), "--dst", str(dst)]) == 0
    assert "removed" in capsys.readouterr().out
    assert mx.check(src, dst) == []


def test_output_is_deterministic_even_without_cell_ids(tmp_path):
    raw = json.loads(nbformat.writes(demo.solution()))
    for cell in raw["cells"]:
        del cell["id"]
    (tmp_path / "06_noids.ipynb").write_text(json.dumps(raw))
    first = mx.build(tmp_path)
    second = mx.build(tmp_path)
    assert first == second
    assert first["06_noids.ipynb"].count('"id": ') == len(raw["cells"])


def test_command_line(tmp_path):
    """One real process (importing nbformat costs seconds); the exit codes are covered in-process above."""
    src, dst = _course(tmp_path)
    done = subprocess.run(
        [sys.executable, str(Path(mx.__file__)), "--src", str(src), "--dst", str(dst)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout and mx.check(src, dst) == []


def test_missing_source_folder_is_an_error(tmp_path, capsys):
    assert mx.main(["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "out")]) == 1
    assert "nope: no such directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
