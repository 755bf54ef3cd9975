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
