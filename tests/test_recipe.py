from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

MINIMAL = """
name = "t"
output_dir = "out"
[data]
data_dir = "{data}"
notes = [{{ corpus = "maccrobat", split = "train", limit = 3 }}]
test = [{{ corpus = "maccrobat", split = "test" }}]
[[teachers]]
spec = "ontology:open"
"""


def write(tmp_path, text, shared_data):
    p = tmp_path / "r.toml"
    p.write_text(text.format(data=shared_data))
    return p


def test_bundled_recipes_validate():
    for name in ("quickstart.toml", "maccrobat_dev.toml", "paper.toml"):
        r = load_recipe(ROOT / "experiments" / name)
        assert r.teachers and r.out.is_absolute()


def test_minimal_recipe_and_relative_paths(tmp_path, shared_data):
    r = load_recipe(write(tmp_path, MINIMAL, shared_data))
    assert r.out == tmp_path / "out"
    assert r.student.targets == "soft" and r.aggregate.method == "weighted"


def test_typo_in_a_key_is_named(tmp_path, shared_data):
    text = MINIMAL + '[student]\nbase_model = "minilm"\nepohcs = 3\n'
    with pytest.raises(RecipeError, match=r"student\.epohcs: unknown key"):
        load_recipe(write(tmp_path, text, shared_data))


def test_missing_data_file_is_named(tmp_path, shared_data):
    text = MINIMAL.replace('corpus = "maccrobat", split = "test"', 'corpus = "no/such/file.jsonl"')
    with pytest.raises(RecipeError, match=r"data\.test\.0: no such corpus or file 'no/such/file.jsonl'"):
        load_recipe(write(tmp_path, text, shared_data))
    with pytest.raises(RecipeError, match=r"data\.data_dir: folder .* does not exist"):
        load_recipe(write(tmp_path, MINIMAL, tmp_path / "nowhere"))


def test_api_teacher_needs_explicit_permission(tmp_path, shared_data):
    text = MINIMAL + '[[teachers]]\nspec = "openai:gpt-4o-mini"\n'
    with pytest.raises(RecipeError, match="teachers.1 .openai:gpt-4o-mini. sends note text to an external API"):
        load_recipe(write(tmp_path, text, shared_data))
    ok = load_recipe(write(tmp_path, "allow_external_api = true\n" + text, shared_data))
    assert ok.allow_external_api
    local = MINIMAL + '[[teachers]]\nspec = "openai:qwen"\noptions = {{ base_url = "http://127.0.0.1:8000/v1" }}\n'
    assert load_recipe(write(tmp_path, local, shared_data))  # a server on this machine is not external


def test_cli_run_check_fails_before_any_work(tmp_path, shared_data):
    text = MINIMAL + '[aggregate]\nmethod = "vote"\n'
    res = runner.invoke(app, ["run", str(write(tmp_path, text, shared_data)), "--check"])
    assert res.exit_code == 2 and "aggregate.method" in res.output
    assert not (tmp_path / "out").exists()


def test_set_overrides_keys_with_toml_values(tmp_path, shared_data):
    path = write(tmp_path, MINIMAL + '[[teachers]]\nspec = "ontology:hpo"\n', shared_data)
    r = load_recipe(path, overrides=['aggregate.layers=["ontology:open"]', "student.targets=hard",
                                     "student.options.epochs=2", "teachers.1.spec=ontology:doid",
                                     "output_dir=runs/open-only", "data.notes.0.limit=5"])
    assert r.aggregate.layers == ["ontology:open"] and r.student.targets == "hard"
    assert r.student.options == {"epochs": 2} and r.teachers[1].spec == "ontology:doid"
    assert r.out == tmp_path / "runs" / "open-only" and r.data.notes[0].limit == 5
    assert load_recipe(path).student.targets == "soft"  # the file itself is unchanged


def test_set_overrides_are_validated_like_the_file(tmp_path, shared_data):
    path = write(tmp_path, MINIMAL, shared_data)
    with pytest.raises(RecipeError, match=r"student\.epohcs: unknown key"):
        load_recipe(path, overrides=["student.epohcs=3"])
    with pytest.raises(RecipeError, match=r"aggregate\.layers names teachers that are not in the recipe"):
        load_recipe(path, overrides=['aggregate.layers=["openai:gpt-4o"]'])
    with pytest.raises(RecipeError, match="expected dotted.key=value"):
        load_recipe(path, overrides=["student.targets"])
    with pytest.raises(RecipeError, match=r"teachers\.3 is not an index of a list of 1"):
        load_recipe(path, overrides=["teachers.3.spec=ontology:open"])
    with pytest.raises(RecipeError, match="name is a value, not a table"):
        load_recipe(path, overrides=["name.x=1"])


def test_cli_run_set_reaches_the_recipe(tmp_path, shared_data):
    path = write(tmp_path, MINIMAL, shared_data)
    res = runner.invoke(app, ["run", str(path), "--check", "--set", "output_dir=elsewhere"])
    assert res.exit_code == 0, res.output
    assert "elsewhere" in res.output
    res = runner.invoke(app, ["run", str(path), "--check", "--set", "aggregate.method=vote"])
    assert res.exit_code == 2 and "aggregate.method" in res.output


@pytest.mark.parametrize("override,message", [
    ("aggregate.options.thresold=0.6", r"aggregate\.options: unknown option thresold \(accepted: .*threshold"),
    ("student.options.epohcs=2", r"student\.options: unknown option epohcs \(accepted: .*epochs"),
    ("bench.options.repeets=2", r"bench\.options: unknown option repeets \(accepted: .*repeats"),
    ("data.test.0.split=tset", r"data\.test\.0\.split: .*unknown split 'tset'"),
])
def test_misspelt_options_and_splits_fail_at_load(tmp_path, shared_data, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path, MINIMAL, shared_data), overrides=[override])


def test_test_documents_in_dev_or_human_train_stop_the_run(tmp_path, shared_data):
    """The leak guard covers what the student is selected (dev) or trained (human_train) on."""
    path = write(tmp_path, MINIMAL, shared_data)
    for key in ("dev", "human_train"):
        res = runner.invoke(app, ["run", str(path), "--set", f'data.{key}={{ corpus = "maccrobat", split = "test+dev" }}'])
        assert res.exit_code == 1, res.output
        assert f"step 'notes' failed: 25 test documents are also in data.{key}" in res.output
        assert "rerun" in res.output


def test_an_edited_corpus_file_reruns_the_notes_step(tmp_path, shared_data):
    from distill.manifest import stale_reason
    from distill.runner import Run

    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"id": "n1", "text": "fever"}\n', encoding="utf-8")
    text = MINIMAL.replace('corpus = "maccrobat", split = "train", limit = 3', f'corpus = "{notes}"')
    run = Run(load_recipe(write(tmp_path, text, shared_data)))
    files = run._source_files()
    assert notes in files and any(p.name == "brat" for p in files)  # the path source and MACCROBAT's folder
    config = run.recipe.section_hash("data", "labels")
    run.step("notes", config, files, run.step_notes)
    assert stale_reason(run.dir("notes"), config, run._source_files()) is None
    notes.write_text('{"id": "n1", "text": "fever and cough"}\n', encoding="utf-8")
    assert stale_reason(run.dir("notes"), config, run._source_files()) == f"input {notes} changed"
