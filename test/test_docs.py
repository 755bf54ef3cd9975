"""The user's manual stays true to the package: every relative link in the README, the model card and
docs/ names a file in the repository and every in-page link a heading, and the README's lists of
sections, node parameters and commands match what the package declares."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / 'README.md', ROOT / 'models' / 'MODEL_CARD.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def readme() -> str:
    return (ROOT / 'README.md').read_text(encoding='utf-8')


def parameter_table() -> str:
    """The README's table of node parameters, header to the blank line after it."""
    text = readme()
    return text[text.index('| parameter | default | what it does |'):].split('\n\n')[0]


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
    text = readme()
    sections = re.findall(r'^## (.+)$', text, flags=re.MULTILINE)
    contents = next(line for line in text.splitlines() if line.startswith('Contents: '))
    assert re.findall(r'\[([^\]]+)\]\(#', contents) == sections


def test_the_readme_lists_every_node_parameter_with_its_default():
    import yaml

    parameters = yaml.safe_load((ROOT / 'config' / 'hand.yaml').read_text())['/**']['ros__parameters']
    rows = dict(re.findall(r'^\| `(\w+)`(?: \(at start\))? \| `([^`]*)` \|', parameter_table(), flags=re.MULTILINE))
    expected = {name: ("''" if value == '' else str(value).lower() if isinstance(value, bool) else str(value))
                for name, value in parameters.items()}
    assert rows == expected


def test_the_readme_marks_the_parameters_read_only_at_start_as_the_node_declares_them():
    from hand_cpm_ros.node import PARAMETERS

    marked = set(re.findall(r'^\| `(\w+)` \(at start\) \|', parameter_table(), flags=re.MULTILINE))
    assert marked == {name for name, (_, fields) in PARAMETERS.items() if fields.get('read_only')}


def test_the_readme_names_every_command_the_package_installs():
    commands = re.findall(r"'([\w-]+) = [\w.]+:main'", (ROOT / 'setup.py').read_text())
    listing = re.search(r'every\s+command lives in `\.venv/bin`:(.*?)Each has `--help`', readme(),
                        flags=re.DOTALL).group(1)
    assert len(commands) > 10
    assert sorted(re.findall(r'`([\w-]+)`', listing)) == sorted(commands)
