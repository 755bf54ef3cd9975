"""The user's manual and its companions link only to what exists: every relative link in the README,
the model card and docs/ names a file in the repository, and every in-page link a heading."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / 'README.md', ROOT / 'models' / 'MODEL_CARD.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r'^#+ (.+)$', text, flags=re.MULTILINE)
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-') for heading in headings}


@pytest.mark.parametrize('document', DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    text = document.read_text(encoding='utf-8')
    anchors = heading_anchors(text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+://', target):
            continue
        if target.startswith('#'):
            if target[1:] not in anchors:
                broken.append(target)
        elif not (document.parent / target.split('#')[0]).exists():
            broken.append(target)
    assert not broken, f'{document.name} links to what does not exist: {broken}'


def test_the_readme_has_a_contents_line_naming_every_section():
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    sections = re.findall(r'^## (.+)$', text, flags=re.MULTILINE)
    contents = next(line for line in text.splitlines() if line.startswith('Contents: '))
    assert re.findall(r'\[([^\]]+)\]\(#', contents) == sections


def test_the_readme_lists_every_node_parameter_with_its_default():
    import yaml

    parameters = yaml.safe_load((ROOT / 'config' / 'hand.yaml').read_text())['/**']['ros__parameters']
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    table = text[text.index('| parameter | default | what it does |'):].split('\n\n')[0]
    rows = dict(re.findall(r'^\| `(\w+)`(?: \(at start\))? \| `([^`]*)` \|', table, flags=re.MULTILINE))
    expected = {name: ("''" if value == '' else str(value).lower() if isinstance(value, bool) else str(value))
                for name, value in parameters.items()}
    assert rows == expected


def test_the_readme_marks_the_parameters_read_only_at_start_as_the_node_declares_them():
    from hand_cpm_ros.node import PARAMETERS

    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    table = text[text.index('| parameter | default | what it does |'):].split('\n\n')[0]
    marked = set(re.findall(r'^\| `(\w+)` \(at start\) \|', table, flags=re.MULTILINE))
    assert marked == {name for name, (_, fields) in PARAMETERS.items() if fields.get('read_only')}


def test_the_readme_names_every_command_the_package_installs():
    commands = re.findall(r"'([\w-]+) = [\w.]+:main'", (ROOT / 'setup.py').read_text())
    listing = (ROOT / 'README.md').read_text(encoding='utf-8').split('every\ncommand lives in `.venv/bin`:')[1]
    listing = listing.split('Each has `--help`')[0]
    assert len(commands) > 10
    assert sorted(re.findall(r'`([\w-]+)`', listing)) == sorted(commands)
