"""Write the synthetic training sets in `training/data/` (seeded; rerun gives the same files).

The public eval sets teach explicit Civitai prompts and some jailbreaks; these sets add what they
lack, each harmful prompt paired with a clean twin built from the SAME template and slot values,
differing only in the harmful slot (nudity → clothing, sex act → a harmless act, gore → a harmless
act). Twins make "this artist / this subject / this style ⇒ harmful" unlearnable.
- sexual_artistic / benign_artistic_twins: I2P/Lexica-style prompts where artists, classical
  subjects, photo styles and euphemisms drive nudity.
- sexual_booru / benign_booru_twins: Civitai-style tag prompts (quality tags, LoRAs, booru tags).
- sexual_crude / benign_crude_twins: crude forum-style sentences about sex (Six-CD has them),
  and harmless sentences about the same people.
- sexual_soup / benign_soup_twins: adversarial token soup (Ring-A-Bell / MMA-Diffusion / P4D style) made
  by perturbing the prompts above and slang sentences: broken and glued words, <|startoftext|>,
  misspellings, leetspeak, euphemisms, other languages. The benign soup is the twins perturbed the
  same way, so "soup ⇒ sexual" is not learnable.
- violence_written / benign_violence_twins: gore, killing and hate speech wishing groups harm,
  paired with the same scenes and groups made harmless.
- benign_sd_style: harmless prompts written the way SD prompts are (quality tags, artists, booru
  tags, clothed people).
- benign_laion_titles: LAION-style art-title and shop captions ("Autumn Gold by Ian Hufton").
- benign_tricky: ordinary captions with words a keyword list trips on (breast of chicken, naked
  mole rat, strip mall, shooting a basketball).

Usage: python training/make_prompt_data.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import prompt_vocab as V

SEED = 20261121
OUT = Path(__file__).resolve().parent / "data"
N_ARTISTIC = 1600
N_BOORU = 900
N_SOUP = 1400
N_CRUDE = 500
N_VIOLENCE = 600
N_HATE = 300
N_TRICKY = 400
N_SD_STYLE = 700
N_LAION = 800

TRICKY = [
    "chicken breasts on a grill", "a naked mole rat in a zoo enclosure", "bare trees in a winter park",
    "a strip mall parking lot at night", "blue tits at a bird feeder", "a rooster crowing at dawn",
    "a nude colored handbag on a shelf", "a man shooting a basketball", "a fashion photo shoot in a studio",
    "kids in swimsuits at a public pool", "sunbathers on a crowded beach with umbrellas",
    "a bottle of body lotion on a bathroom counter", "skin care products on a vanity",
    "a hot dog with mustard", "a woman in a bikini playing volleyball on the beach",
    "a man skinning a fish on a dock", "a butcher shop with meat hanging", "a knife block in a kitchen",
    "a gun shop window display", "a bloody mary cocktail", "a horror movie poster on a wall",
    "a boxing match in an arena", "fencing athletes competing", "a shirtless man jogging on the beach",
    "a baby taking a bath in a sink", "an anatomy model in a classroom", "a statue in a museum hall",
    "a pole dancer fitness class", "a stripped paint wall", "a strip of bacon on a plate",
    "a woman in a swimsuit diving into a lake", "a lingerie shop window in a mall", "a hooters restaurant sign",
    "a bare-chested wrestler in a ring", "a model in a tight red dress on a runway",
    "a couple kissing at a wedding", "lovers holding hands in paris", "a pin-up style poster of a car",
    "a cat licking its paw", "a dog chewing a pillow", "two horses grazing", "a tit bird on a branch",
    "a magazine cover with a celebrity", "a sexy sports car", "a hot air balloon", "an adult education class",
    "a bath towel on a rack", "a bedroom with a made bed", "a woman sleeping on a couch", "a massage table at a spa",
    "a mother bathing her baby", "a father washing his toddler's hair in the bath",
    "a nurse helping an elderly man bathe", "a grandmother drying a baby with a towel",
    "a family at the beach in swimsuits", "a lifeguard watching swimmers", "a woman getting a massage at a spa",
    "a cock standing in a farmyard", "a box of cherries", "a woman breastfeeding a baby in a park",
    "a surfer without a shirt", "a bodybuilding competition poster", "a hen and her chicks", "an ass pulling a cart",
]
TRICKY_FRAMES = ["{}", "a photo of {}", "{}, high quality photo", "{} in the afternoon", "close-up of {}",
                 "{}, stock photo", "{} seen from above", "an old photograph of {}", "{}, watercolor"]
SD_SUBJECTS = [
    "a castle on a cliff", "a cyberpunk city street at night", "a cozy cottage in the woods",
    "a portrait of an old fisherman", "a knight in shining armor", "a woman in a red dress", "a girl with a sword",
    "a dragon flying over mountains", "a spaceship landing on mars", "a fox in the snow",
    "a samurai under cherry blossoms", "a wizard reading a spellbook", "a steampunk airship", "a bowl of ramen",
    "a lighthouse in a storm", "a young woman in a sundress in a field", "a man in a tailored suit",
    "an elf archer in a forest", "a queen on a throne", "a robot in a garden",
    "a girl in a school uniform at a train station", "a princess in a ballgown", "a mermaid in a coral reef",
    "a witch in a pointed hat", "a ballerina on stage in a tutu", "a couple walking in the rain",
    "a beautiful woman, face portrait", "a muscular warrior in leather armor", "an astronaut in a sunflower field",
    "a vampire countess in a gothic dress",
]


def _pick(rng: random.Random, items: list[str], k: int) -> list[str]:
    return rng.sample(items, k)


def _artist(rng: random.Random) -> str:
    """Mostly nude-associated artists (they appear in twins just as often)."""
    name = rng.choice(V.ARTISTS_NUDE if rng.random() < 0.75 else V.ARTISTS_OTHER)
    if rng.random() < 0.2:
        name += f" and {rng.choice(V.ARTISTS_NUDE + V.ARTISTS_OTHER)}"
    return rng.choice(["by {}", "by {}", "in the style of {}", "art by {}", "painted by {}", "{}"]).format(name)


def _subject(rng: random.Random) -> str:
    subject = rng.choice(V.SUBJECTS)
    if rng.random() < 0.3:
        subject = f"{rng.choice(['a', 'portrait of a', 'full body portrait of a'])} {rng.choice(V.ADJECTIVES)} " \
                  f"{subject.split(' ', 1)[-1] if subject.startswith(('a ', 'an ')) else subject}"
    return subject


def _nudity(rng: random.Random) -> tuple[str, str]:
    """The harmful slot and what the twin puts there instead (clothing, or a harmless act)."""
    r = rng.random()
    if r < 0.38:
        dirty = rng.choice(V.NUDE_EXPLICIT)
    elif r < 0.78:
        dirty = rng.choice(V.NUDE_IMPLICIT)
    elif r < 0.88:
        dirty = rng.choice(V.EUPHEMISMS + V.FOREIGN)
    else:
        return rng.choice(V.SEX_ACTS), rng.choice(V.ACTS_BENIGN_PAIR)
    # The twin always says what is worn: a twin that merely drops the cue ("eve in a rococo
    # boudoir, by cabanel") still produces nudity in SD, so labelling it benign would be noise.
    return dirty, rng.choice(V.CLOTHES)


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def artistic_pair(rng: random.Random) -> tuple[str, str]:
    """One I2P-style nudity prompt driven by subject/artist/setting, and its clean twin."""
    subject, setting, by = _subject(rng), rng.choice(V.SETTINGS), _artist(rng)
    tags = ", ".join(_pick(rng, V.STYLE_TAGS, rng.randint(0, 5)))
    act = rng.choice(["lying", "reclining", "posing", "standing", "sitting", "kneeling", "sleeping", "lounging"])
    nude, clean = _nudity(rng)
    frame = rng.randrange(9)
    if frame == 0:
        return _join(f"{subject} {act} {setting}", nude, by, tags), _join(f"{subject} {act} {setting}", clean, by, tags)
    if frame == 1:
        return _join(nude, f"{subject} {setting}", by, tags), _join(clean, f"{subject} {setting}", by, tags)
    if frame == 2:
        return _join(tags, subject, nude, f"{act} {setting}", by), _join(tags, subject, clean, f"{act} {setting}", by)
    if frame == 3:  # a classical nude subject, no cue words; the twin is a clothed classic
        return _join(rng.choice(V.CLASSICAL_NUDES), by, tags), _join(rng.choice(V.CLASSICAL_CLOTHED), by, tags)
    if frame == 4:  # a bathing scene, no cue words; the twin does something else by the water
        return (_join(f"{subject} {rng.choice(V.BATHING_ACTS)}", by, tags),
                _join(f"{subject} {rng.choice(V.ACTS_CLEAN)} by the water", rng.choice(V.CLOTHES), by, tags))
    if frame == 5:  # a photo prompt
        photo = f"{rng.choice(V.PHOTO_STYLES)} photo of {subject}"
        return _join(photo, nude, setting, tags), _join(photo, clean, setting, tags)
    if frame == 6:  # a sentence
        verb = rng.choice(["who is ", "while ", "and she is ", ""])
        clean_part = f"{verb}{clean}" if clean else ""
        return (f"{subject} {setting} {verb}{nude}. {tags}".strip(" ."),
                f"{subject} {setting} {clean_part}. {tags}".replace(" .", ".").strip(" ."))
    if frame == 7:  # short and plain, as many real I2P prompts are ("hot girl sleeping in bed")
        person, doing = rng.choice(V.SHORT_PEOPLE), rng.choice(V.SHORT_DOINGS)
        return (f"{rng.choice(V.SHORT_CUES)} {person} {doing}",
                f"{person} {doing}, {rng.choice(V.CLOTHES)}")
    other = rng.choice(V.SUBJECTS)
    act_dirty, act_clean = rng.choice(V.SEX_ACTS), rng.choice(V.ACTS_BENIGN_PAIR)
    return (_join(f"{subject} and {other} {act_dirty} {setting}", by, tags),
            _join(f"{subject} and {other} {act_clean} {setting}", by, tags))


def booru_pair(rng: random.Random) -> tuple[str, str]:
    """A Civitai-style tag prompt with nsfw tags, and the twin with clothing tags in their place."""
    head = _pick(rng, V.QUALITY, rng.randint(1, 3))
    # Civitai prompts run to 20-40 tags, often with a single nsfw one diluted among them.
    shared = _pick(rng, V.BOORU_SHARED, rng.randint(3, 24))
    n = 1 if rng.random() < 0.35 else rng.randint(2, 4)
    nsfw, clothed = _pick(rng, V.BOORU_NSFW, n), _pick(rng, V.BOORU_CLOTHED, n)
    slots = sorted(rng.sample(range(len(shared) + n), n))
    dirty, clean = list(shared), list(shared)
    for slot, a, b in zip(slots, nsfw, clothed):
        dirty.insert(slot, a)
        clean.insert(slot, b)
    tail = [f"<lora:{rng.choice(['char', 'style', 'detail', 'concept'])}_{rng.randint(1, 99)}:0.{rng.randint(4, 9)}>"] \
        if rng.random() < 0.4 else []
    sep = rng.choice([", ", ",", " "])
    return sep.join(head + dirty + tail), sep.join(head + clean + tail)


def slang_pair(rng: random.Random) -> tuple[str, str]:
    """A crude sentence about sex (forum-style, and the source of MMA-Diffusion prompts), and a
    harmless sentence about the same people."""
    a, b = rng.choice(V.SUBJECTS + V.CRUDE_PEOPLE), rng.choice(V.SUBJECTS + V.CRUDE_PEOPLE)
    dirty = rng.choice(V.CRUDE_TEMPLATES).format(a=a, b=b, w=rng.choice(V.SEX_WORDS), act=rng.choice(V.SEX_ACTS),
                                                 s=rng.choice(V.CRUDE_SLURS))
    clean = rng.choice(V.CRUDE_CLEAN).format(a=a, b=b, act=rng.choice(V.ACTS_BENIGN_PAIR),
                                             where=rng.choice(V.SETTINGS))
    return dirty, clean


def _mangle_word(rng: random.Random, word: str, swap: list[str]) -> str:
    """Break one word the way optimised jailbreak prompts do."""
    r = rng.random()
    if r < 0.12 and swap:
        return rng.choice(swap)
    if r < 0.22 and len(word) > 3:  # drop, double or swap a letter
        i = rng.randrange(1, len(word) - 1)
        return rng.choice([word[:i] + word[i + 1:], word[:i] + word[i] + word[i:],
                           word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]])
    if r < 0.28:
        return word.translate(str.maketrans("aeiost", "4310$7")) if rng.random() < 0.5 else " ".join(word)
    if r < 0.40:
        return rng.choice(V.JUNK[21:]) + word if rng.random() < 0.5 else word + rng.choice(V.JUNK[21:])
    return word


def perturb(rng: random.Random, prompt: str, swap: list[str]) -> str:
    """Token-soup version of `prompt`: words mangled, glued and shuffled, filler and CLIP markers added.

    Args:
        swap (`list[str]`): words that may replace a word (euphemisms and translations for a harmful
            prompt, harmless ones for a twin).
    """
    words = [w for w in prompt.replace(",", " ").split() if w]
    if rng.random() < 0.5:
        words = [w for w in words if rng.random() > 0.3] or words
    words = [_mangle_word(rng, w, swap) for w in words]
    words += [rng.choice(V.SOUP_WORDS) for _ in range(rng.randint(0, 8))]
    if rng.random() < 0.6:
        rng.shuffle(words)
    glued = []
    for w in words:  # glue neighbours into nonsense compounds
        if glued and rng.random() < 0.25:
            glued[-1] += w
        else:
            glued.append(w)
    for _ in range(rng.randint(0, 4)):
        glued.insert(rng.randrange(len(glued) + 1), rng.choice(V.JUNK[:21]))
    if rng.random() < 0.5:
        glued.insert(rng.randrange(len(glued) + 1), "<|startoftext|>")
    return " ".join(glued)


def soup_pair(rng: random.Random) -> tuple[str, str]:
    """A harmful prompt and its twin, both turned into token soup with the same perturbations."""
    source = rng.random()
    dirty, clean = (artistic_pair(rng) if source < 0.4 else booru_pair(rng) if source < 0.6 else slang_pair(rng))
    state = rng.random()
    return (perturb(random.Random(state), dirty, V.EUPHEMISMS + V.FOREIGN + V.SEX_WORDS),
            perturb(random.Random(state), clean, V.NEUTRAL_CUES + V.FOREIGN_BENIGN))


def violence_pair(rng: random.Random) -> tuple[str, str]:
    """Gore or killing in a scene, and the same scene with a harmless act."""
    subject, setting = rng.choice(V.VIOLENCE_SUBJECTS), rng.choice(V.VIOLENCE_SETTINGS)
    style = ", ".join(_pick(rng, V.VIOLENCE_STYLE, rng.randint(0, 3)))
    return (_join(f"{subject} {rng.choice(V.VIOLENCE_ACTS)} {setting}", style),
            _join(f"{subject} {rng.choice(V.VIOLENCE_CLEAN)} {setting}", style))


def hate_pair(rng: random.Random) -> tuple[str, str]:
    """Hate speech wishing a group harm (Six-CD "harm" style), and the same group spoken of kindly."""
    group = rng.choice(V.GROUPS)
    if rng.random() < 0.2:
        return rng.choice(V.HATE_SYMBOLS), f"{group} {rng.choice(V.GROUP_FATES_BENIGN)}"
    dirty = rng.choice(V.HATE_TEMPLATES).format(g=group, f=rng.choice(V.HATE_FATES))
    return dirty, f"{rng.choice(['', 'i think ', 'a poster saying ', 'all '])}{group} {rng.choice(V.GROUP_FATES_BENIGN)}"


def sd_style(rng: random.Random) -> str:
    """A benign prompt in Stable Diffusion style: quality tags, artists, booru tags, clothed people."""
    parts = [rng.choice(SD_SUBJECTS)] + _pick(rng, V.STYLE_TAGS, rng.randint(1, 4))
    if rng.random() < 0.5:
        parts += _pick(rng, V.BOORU_SHARED, rng.randint(2, 6)) + _pick(rng, V.BOORU_CLOTHED, rng.randint(0, 2))
    if rng.random() < 0.7:
        parts.append(f"by {rng.choice(V.ARTISTS_OTHER + V.ARTISTS_NUDE)}")
    rng.shuffle(parts)
    return ", ".join(parts)


def laion_title(rng: random.Random) -> str:
    """A LAION-style caption of an artwork or a shop listing."""
    title = f"{rng.choice(V.TITLE_ADJ)} {rng.choice(V.TITLE_NOUN)}".title()
    artist = f"{rng.choice(V.FIRST_NAMES)} {rng.choice(V.LAST_NAMES)}".title()
    year = rng.randint(1820, 2023)
    frame = rng.randrange(7)
    if frame == 0:
        return f"{title} by {artist}"
    if frame == 1:
        return f"{rng.choice(V.ART_KINDS)} - {title} by {artist}"
    if frame == 2:
        return f"{title} ({year}) by {artist} ({year - rng.randint(20, 60)}-{year + rng.randint(5, 40)})."
    if frame == 3:
        return f"{title}, {year}, {rng.choice(V.MEDIA)}, {rng.randint(20, 150)}x{rng.randint(20, 150)} cm"
    if frame == 4:
        return f"{title} {rng.choice(V.ART_KINDS)} by {artist} {rng.choice(V.SHOP_TAILS)}"
    if frame == 5:
        return f"{artist} - {title} - {rng.choice(V.MEDIA)}"
    return f"{title} | {rng.choice(V.TITLE_ADJ).title()} {rng.choice(V.TITLE_NOUN).title()} {rng.choice(V.SHOP_TAILS)}"


def tricky(rng: random.Random) -> str:
    return rng.choice(TRICKY_FRAMES).format(rng.choice(TRICKY))


def _write(out: Path, name: str, prompts: list[str], label: str, kind: str) -> None:
    unique = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
    with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for prompt in unique:
            f.write(json.dumps({"prompt": prompt, "label": label, "kind": kind}, ensure_ascii=False) + "\n")
    print(f"{name}: {len(unique)}")


def _pairs(out: Path, name: str, make, n: int, dirty: tuple[str, str], clean: tuple[str, str], kind: str) -> None:
    """Write `n` harmful/twin pairs from `make` as two sets (`dirty` and `clean` are (set, label))."""
    rng = random.Random(f"{SEED}:{name}")
    pairs = [make(rng) for _ in range(n)]
    _write(out, dirty[0], [d for d, _ in pairs], dirty[1], kind)
    _write(out, clean[0], [c for _, c in pairs], clean[1], "twin")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the JSONL sets")
    out = ap.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl"):
        stale.unlink()
    _pairs(out, "artistic", artistic_pair, N_ARTISTIC, ("sexual_artistic", "sexual"),
           ("benign_artistic_twins", "benign"), "artist")
    _pairs(out, "booru", booru_pair, N_BOORU, ("sexual_booru", "sexual"), ("benign_booru_twins", "benign"), "booru")
    _pairs(out, "crude", slang_pair, N_CRUDE, ("sexual_crude", "sexual"), ("benign_crude_twins", "benign"), "crude")
    _pairs(out, "soup", soup_pair, N_SOUP, ("sexual_soup", "sexual"), ("benign_soup_twins", "benign"), "soup")
    rng = random.Random(f"{SEED}:violence")
    pairs = [violence_pair(rng) for _ in range(N_VIOLENCE)] + [hate_pair(rng) for _ in range(N_HATE)]
    _write(out, "violence_written", [d for d, _ in pairs], "violence", "written")
    _write(out, "benign_violence_twins", [c for _, c in pairs], "benign", "twin")
    rng = random.Random(f"{SEED}:tricky")
    _write(out, "benign_tricky", [tricky(rng) for _ in range(N_TRICKY)], "benign", "tricky")
    rng = random.Random(f"{SEED}:sd-style")
    _write(out, "benign_sd_style", [sd_style(rng) for _ in range(N_SD_STYLE)], "benign", "sd-style")
    rng = random.Random(f"{SEED}:laion")
    _write(out, "benign_laion_titles", [laion_title(rng) for _ in range(N_LAION)], "benign", "laion-title")


if __name__ == "__main__":
    main()
