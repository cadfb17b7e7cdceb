"""A short built-in list of the passwords attackers try first, and the check that uses it (pure).

It is deliberately small and shipped with the package (no download at run time): the bases below
catch the usual variants too, because digits and symbols added at either end are ignored.
"""

from __future__ import annotations

__all__ = ["COMMON_PASSWORDS", "is_common_password", "password_weakness"]

COMMON_PASSWORDS = frozenset(
    """
    password passw0rd p@ssw0rd p@ssword pass pa55word password1 passwort motdepasse contrasena
    123456 1234567 12345678 123456789 1234567890 12345678910 0987654321 9876543210 123123 123321
    111111 000000 654321 121212 112233 123654 147258369 159753 1q2w3e 1q2w3e4r 1q2w3e4r5t
    1q2w3e4r5t6y 1qaz2wsx 1qaz2wsx3edc zaq12wsx zaq1zaq1 qazwsx qazwsxedc qwerty qwertyu
    qwertyui qwertyuiop qwertz qwertzuiop azerty azertyuiop asdf asdfgh asdfghjk asdfghjkl
    zxcvbn zxcvbnm abc abcd abcdef abcdefg abcdefgh abcdefghij abcdefghijk abc123 a1b2c3
    iloveyou iloveu loveyou lovely love letmein welcome welcome1 hello hellohello secret
    secretpassword mypassword yourpassword newpassword changeme changeit default guest login
    admin administrator root toor master superuser user test tester testing testtest demo
    sample example thotbot thotbotapi apikey api token access letmeinplease opensesame
    monkey dragon shadow sunshine princess football baseball basketball soccer hockey
    superman batman spiderman starwars pokemon minecraft fortnite michael jennifer jordan
    charlie thomas daniel andrew joshua hunter ranger buster tigger ginger pepper cookie
    chocolate cheese computer internet freedom whatever nothing trustno1 killer summer winter
    spring autumn flower purple orange yellow silver golden diamond angel angels jesus
    christ blessed faith hope lucky matrix mustang ferrari porsche harley corvette
    liverpool chelsea arsenal barcelona juventus madrid manchester united america canada
    london paris berlin qwerty123 qwerty1 password123 password1234 iloveyou1 iloveyou123
    admin123 admin1234 root123 welcome123 letmein123 abc123456 aa123456 a123456 a12345678
    q1w2e3r4 q1w2e3r4t5 q1w2e3r4t5y6 1a2b3c4d 1a2b3c4d5e zxcvbnm123 asdfghjkl123
    correcthorsebatterystaple
    """.split()  # noqa: SIM905 - a word list reads and grows more easily than a list literal
)

_PADDING = "0123456789!@#$%^&*()_-+=.,?~ "


def password_weakness(password: str, email: str | None = None) -> str | None:
    """'common' for a listed password (or a listed word padded with digits or symbols) or one of
    one or two repeated characters; 'email' for the email address or its local part; else None."""
    value = password.lower()
    core = value.strip(_PADDING)
    if {value, core, core.replace(" ", "")} & COMMON_PASSWORDS or len(set(value)) <= 2:
        return "common"
    if email:
        local = email.lower().partition("@")[0]
        if value == email.lower() or (len(local) >= 3 and core in (local, local.replace(".", ""))):
            return "email"
    return None


def is_common_password(password: str, email: str | None = None) -> bool:
    return password_weakness(password, email) is not None
