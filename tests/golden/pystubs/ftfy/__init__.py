"""Stand-in for ftfy (not packaged by Debian): its text repair is taken as
the identity, the convention the project's tokenizer goldens follow. Only the
golden script sees this; no prompt in the goldens needs repairing."""


def fix_text(text, **_kwargs):
    return text
