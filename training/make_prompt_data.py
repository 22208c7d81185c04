"""Write the synthetic training sets in `training/data/` (seeded; rerun gives the same files).

The public eval sets teach explicit and jailbreak prompts; these sets add what they lack:
- sexual_artistic / benign_artistic_twins: I2P-style prompts where artists, classical subjects
  and situations drive nudity, each paired with a clean twin that keeps subject, artist, setting
  and style but dresses the figure and changes the act. The twins stop "artist name ⇒ sexual".
- sexual_soup / benign_soup: adversarial token soup (Ring-A-Bell / MMA-Diffusion style: broken
  sub-words, <|startoftext|>, misspellings) with and without nudity fragments, so "soup ⇒ sexual"
  is not learnable either.
- violence_written / benign_violence_twins: gore and killing, paired with the same scenes made
  harmless (the knife cuts bread).
- benign_sd_style: harmless prompts written the way SD prompts are (quality tags, artists, booru
  tags, clothed people), so "SD-style ⇒ sexual" is not learnable.
- benign_tricky: ordinary captions with words a keyword list trips on (breast of chicken, naked
  mole rat, strip mall, shooting a basketball).

Usage: python training/make_prompt_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261121
OUT = Path(__file__).resolve().parent / "data"
N_ARTISTIC = 1200
N_SOUP = 700
N_VIOLENCE = 500
N_TRICKY = 400
N_SD_STYLE = 700

ARTISTS_NUDE = [
    "william-adolphe bouguereau", "alexandre cabanel", "jean-leon gerome", "titian", "peter paul rubens",
    "francois boucher", "ingres", "gustav klimt", "egon schiele", "amedeo modigliani", "milo manara",
    "frank frazetta", "boris vallejo", "luis royo", "hajime sorayama", "helmut newton", "gil elvgren",
    "olivia de berardinis", "artgerm", "wlop", "ilya kuvshinov", "sakimichan", "john william godward",
    "frederic leighton", "lawrence alma-tadema", "herbert james draper", "john collier", "anders zorn",
    "jules joseph lefebvre", "pierre-auguste renoir", "lucian freud", "jenny saville", "alphonse mucha",
    "greg rutkowski", "j. c. leyendecker", "tom bagshaw", "charlie bowater", "range murata",
]
STYLE_TAGS = [
    "oil on canvas", "highly detailed", "trending on artstation", "8k", "masterpiece", "best quality",
    "soft lighting", "cinematic lighting", "photorealistic", "digital painting", "sharp focus",
    "renaissance painting", "academic art", "unreal engine", "octane render", "film grain",
    "35mm photo", "studio photo", "hyperrealistic", "intricate", "golden hour", "dramatic lighting",
    "concept art", "by a famous painter", "museum quality", "realistic skin texture", "(detailed face:1.2)",
]
SUBJECTS = [
    "a beautiful woman", "a young woman", "a red-haired woman", "a goddess", "venus", "aphrodite",
    "a nymph", "a mermaid", "an elven princess", "a blonde model", "a couple", "two women", "a man",
    "a muscular man", "an odalisque", "eve in the garden of eden", "a dancer", "a fashion model",
    "a woman with long black hair", "a curvy woman", "a ballerina", "a witch", "a vampire queen",
    "a japanese woman", "an instagram model", "a housewife", "a cowgirl", "a female knight", "a succubus",
    "a gorgeous brunette", "a redhead", "a woman and a man", "a fitness model", "a latina woman", "a goth girl",
]
PHOTO_STYLES = ["polaroid", "35mm film", "instagram", "amateur", "professional", "hasselblad", "candid",
                "fashion magazine", "vintage 1970s", "dslr"]
SETTINGS = [
    "in a forest pool", "on a beach at sunset", "in a bedroom", "on silk sheets", "in a bathtub",
    "by a waterfall", "in a greek temple", "in a victorian parlour", "in a photo studio", "in a meadow",
    "on a velvet sofa", "in a hot spring", "in a harem", "on a rock by the sea", "in a luxury hotel room",
    "under a waterfall", "in a sauna", "in a rococo boudoir", "in a moonlit garden", "on a yacht",
]
NUDE_CUES = [
    "nude", "naked", "fully nude", "topless", "bare breasts", "nipples", "no clothes", "undressed",
    "completely naked", "nsfw", "artistic nude", "nude figure study", "naked body", "bare skin, nude",
    "erotic", "sensual nude", "full frontal nudity", "wearing nothing", "see-through wet chemise, nipples",
    "nude, breasts", "uncensored", "nude portrait", "skinny dipping", "body paint only", "lewd",
    "(nude:1.3)", "((naked))", "(nsfw:1.2)", "(topless:1.1)", "(nipples:1.2), (breasts:1.1)",
]
# Implicit cues: the words I2P prompts that produced nudity use instead of "nude".
IMPLICIT_CUES = [
    "sensual, full body, skin", "seductive pose, bare shoulders, bare back, skin", "boudoir photography",
    "lingerie", "pin-up, playboy centerfold", "bathing, wet skin, full body", "voluptuous body, curves",
    "reclining, covered only by her long hair", "towel slipping off after a shower", "intimate, sultry",
    "figure study, life drawing model", "sexy, perfect body", "posing for playboy", "only a sheer veil",
    "sexy body, cleavage, thighs", "hot body, seductive look", "undressing", "in a thong, from behind",
    "wet t-shirt", "wearing only an unbuttoned shirt", "bed sheets barely covering her", "suggestive pose",
    "perfect figure, smooth skin, full body shot", "oiled skin, arched back", "bending over",
    "wearing nothing but jewelry", "modeling for an art class", "posing on a bearskin rug",
]
# Classical subjects that are nudes by tradition: named with an artist they produce nudity unasked.
CLASSICAL_NUDES = [
    "the birth of venus", "venus rising from the sea", "sleeping venus", "the three graces", "leda and the swan",
    "susanna and the elders", "diana bathing with her nymphs", "bathsheba at her bath", "danae", "lady godiva on horseback",
    "andromeda chained to a rock", "the judgement of paris", "the bathers", "adam and eve in the garden of eden",
    "nymphs and satyr", "the grande odalisque", "psyche", "a bacchanal", "a turkish bath", "pygmalion and galatea",
]
BATHING_ACTS = ["bathing in a lake", "taking a bath", "showering", "skinny dipping in a river", "sunbathing on the sand",
                "washing herself in a stream", "lying on a bed after a bath", "stepping out of the bath"]
ACTS_NUDE = ["bathing", "lying", "reclining", "posing", "stretching", "sunbathing", "undressing",
             "embracing", "kneeling", "sleeping", "swimming", "showering"]
CLOTHES = [
    "wearing an elegant long gown", "in a heavy wool coat", "dressed in silver armor", "wearing a sweater and jeans",
    "in a high-collared victorian dress", "wearing a business suit", "in a hooded travelling cloak",
    "wearing a modest white linen dress", "in a knitted cardigan and scarf", "wearing a raincoat",
    "in a flowing long-sleeved robe", "wearing overalls",
    "dressed as a medieval queen", "in a kimono", "wearing a leather jacket", "in a fully buttoned trench coat",
]
ACTS_CLEAN = ["reading a book", "painting a canvas", "walking", "playing the violin", "drinking tea",
              "picking flowers", "looking at the horizon", "holding a lantern", "feeding birds",
              "writing a letter", "standing", "sitting"]

NUDE_FRAGMENTS = [
    "nude", "nudes", "naked", "nakd", "nakeed", "nudity", "nipples", "nipple", "breasts", "boobs", "tits",
    "topless", "nsfw", "erotic", "erotica", "porn", "pornographic", "sexy", "sex", "hentai", "lewd",
    "busty", "buttocks", "butt", "genitals", "vagina", "penis", "undressed", "bare", "bikini", "lingerie",
    "orgasm", "stripper", "strip", "nudist", "horny", "milf", "onlyfans", "cleavage", "areola", "nudeart",
]
# Filler for both soups: neutral words (people included), so "soup" itself carries no label.
SOUP_WORDS = [
    "whispering", "wholesale", "pastel", "sincerely", "scrolling", "classified", "inspirational",
    "quarter", "statue", "imagery", "gently", "tagged", "realistic", "olde", "buddies", "besties",
    "gradually", "simultaneously", "excluding", "surrounding", "elderly", "gentleman", "livingroom",
    "midst", "partially", "somehow", "struggling", "blonde", "woman", "man", "girl", "lady", "couple",
    "party", "against", "hindu", "armchair", "leaning", "wearing", "group", "currently", "biggest",
    "beautiful", "upset", "opposing", "youthful", "cracked", "doctor", "kitchen", "cathedral", "finally",
    "other", "multi", "aided", "photo", "model", "portrait", "painting", "art", "ocean", "sunny",
    "window", "yellow", "tuesday", "engine", "sorry", "candid", "museum", "basket", "river", "chair",
]
# Context words optimised jailbreak prompts pile up around the nudity fragments (sexual soup only).
SOUP_SUGGESTIVE = ["bedroom", "beds", "mated", "consent", "flesh", "body", "pink", "mature", "pert",
                   "wet", "licking", "spread", "hot", "shower", "intimate", "lying"]
# Harmless words that take the place of the nudity fragments in the benign soup.
NEUTRAL_CUES = ["mountain", "bicycle", "sandwich", "kettle", "giraffe", "umbrella", "train", "laptop",
                "guitar", "lighthouse", "teapot", "tractor", "violin", "cactus", "bridge", "penguin"]
JUNK = ["<|startoftext|>", "<|endoftext|>", "(-", ")'", "_.", "?", "!!", "..", "//", "~", "ðŁĺĤ", "ï¸ı", "#",
        "xx", "hwf", "zq", "sxu", "kn", "uf", "oned", "ffo", "mmm", "adv", "gko", "vik", "rr", "ij", "qh"]

VIOLENCE_SUBJECTS = ["a man", "a soldier", "a serial killer", "a zombie", "a knight", "a gangster",
                     "a masked killer", "a crowd of rioters", "a butcher", "a demon", "an executioner",
                     "a samurai", "a mob", "a cult leader", "a pirate", "a terrorist"]
VIOLENCE_ACTS = [
    "stabbing a screaming victim, blood everywhere", "decapitating a prisoner, severed head",
    "torturing a man in a dungeon, mutilated body", "shooting people in the street, corpses on the ground",
    "eating human flesh, gore, entrails", "beating a man to death with a bat, bloody",
    "dismembering a body with a chainsaw, gore", "executing prisoners by firing squad, blood splatter",
    "slitting a throat, blood spraying", "burning people alive, charred bodies",
    "hanging a man from a tree, lynching", "massacring villagers, piles of dead bodies",
    "ripping out a heart, bloody gore", "bombing a market, injured and dead people",
    "strangling a woman", "gouging out eyes, horrific gore", "impaling heads on spikes",
    "holding a bloody severed arm", "kicking a dying man, pool of blood", "cutting off fingers, torture",
]
VIOLENCE_CLEAN = [
    "cutting bread with a knife in a kitchen", "standing guard at a memorial", "carving a pumpkin",
    "chopping vegetables with a cleaver", "polishing a sword in a museum", "playing chess",
    "walking through a village at dusk", "holding a red rose", "repairing a fence", "reading a newspaper",
    "cooking dinner", "training in a dojo with a wooden sword", "waving to a crowd", "painting a wall red",
    "sleeping on a bench", "lighting a campfire", "fishing at a lake", "riding a horse", "drinking coffee",
    "giving a speech",
]
VIOLENCE_SETTINGS = ["in a dark alley", "on a battlefield", "in a basement", "in a village square",
                     "in an abandoned hospital", "at night in the rain", "in a medieval castle",
                     "in a school hallway", "in a forest", "in a slaughterhouse", "on a city street",
                     "in a prison cell", "in a church", "in a desert town"]
VIOLENCE_STYLE = ["horror", "photorealistic", "gritty", "dark fantasy", "war photography", "cinematic",
                  "highly detailed", "hyperrealistic", "trending on artstation", "8k", "news photo",
                  "by zdzislaw beksinski", "by h. r. giger", "oil painting", "graphic novel style"]

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
    "a bath towel on a rack",
    "a bedroom with a made bed", "a woman sleeping on a couch", "a massage table at a spa",
]
TRICKY_FRAMES = ["{}", "a photo of {}", "{}, high quality photo", "{} in the afternoon", "close-up of {}",
                 "{}, stock photo", "{} seen from above", "an old photograph of {}", "{}, watercolor"]


SD_SUBJECTS = [
    "a castle on a cliff", "a cyberpunk city street at night", "a cozy cottage in the woods", "a portrait of an old fisherman",
    "a knight in shining armor", "a woman in a red dress", "a girl with a sword", "a dragon flying over mountains",
    "a spaceship landing on mars", "a fox in the snow", "a samurai under cherry blossoms", "a wizard reading a spellbook",
    "a steampunk airship", "a bowl of ramen", "a lighthouse in a storm", "a young woman in a sundress in a field",
    "a man in a tailored suit", "an elf archer in a forest", "a queen on a throne", "a robot in a garden",
    "a girl in a school uniform at a train station", "a princess in a ballgown", "a mermaid in a coral reef",
    "a witch in a pointed hat", "a ballerina on stage in a tutu", "a couple walking in the rain", "a beautiful woman, face portrait",
    "a muscular warrior in leather armor", "an astronaut in a sunflower field", "a vampire countess in a gothic dress",
]
BOORU_TAGS = [
    "1girl", "solo", "long hair", "looking at viewer", "smile", "blue eyes", "outdoors", "cherry blossoms",
    "school uniform", "hoodie", "scarf", "holding umbrella", "sky", "city lights", "short hair", "twintails",
    "upper body", "dress", "jacket", "armor", "sword", "hat", "glasses", "night", "rain", "flowers",
    "(detailed eyes:1.2)", "<lora:add_detail:0.6>", "(masterpiece:1.2)", "absurdres", "anime style",
]
SD_ARTISTS = ARTISTS_NUDE[-8:] + ["studio ghibli", "thomas kinkade", "james gurney", "simon stalenhag", "moebius",
                                  "makoto shinkai", "john singer sargent", "claude monet", "rembrandt", "hokusai"]


def sd_style(rng: random.Random) -> str:
    """A benign prompt in Stable Diffusion style: quality tags, artists, booru tags, clothed people."""
    parts = [rng.choice(SD_SUBJECTS)]
    parts += _pick(rng, STYLE_TAGS, rng.randint(1, 4))
    if rng.random() < 0.5:
        parts += _pick(rng, BOORU_TAGS, rng.randint(2, 6))
    if rng.random() < 0.7:
        parts.append(f"by {rng.choice(SD_ARTISTS + ARTISTS_NUDE)}")
    rng.shuffle(parts)
    return ", ".join(parts)


def _pick(rng: random.Random, items: list[str], k: int) -> list[str]:
    return rng.sample(items, k)


def artistic_pair(rng: random.Random) -> tuple[str, str]:
    """One nudity prompt driven by subject/artist/setting, and its clean twin."""
    subject, setting = rng.choice(SUBJECTS), rng.choice(SETTINGS)
    artist = rng.choice(ARTISTS_NUDE)
    tags = ", ".join(_pick(rng, STYLE_TAGS, rng.randint(1, 4)))
    cue = rng.choice(NUDE_CUES if rng.random() < 0.45 else IMPLICIT_CUES)
    act = rng.choice(ACTS_NUDE)
    by = f"by {artist}" if rng.random() < 0.8 else f"in the style of {artist}"
    frame = rng.randrange(6)
    clothes, clean_act = rng.choice(CLOTHES), rng.choice(ACTS_CLEAN)
    if frame == 3:  # a classical nude subject, no cue words
        return (f"{rng.choice(CLASSICAL_NUDES)}, {by}, {tags}",
                f"{subject} {clothes}, {clean_act} {setting}, {by}, {tags}")
    if frame == 4:  # a bathing scene, no cue words
        return (f"{subject} {rng.choice(BATHING_ACTS)}, {by}, {tags}",
                f"{subject} {clean_act} by a lake, {clothes}, {by}, {tags}")
    if frame == 5:  # a photo prompt
        photo = f"{rng.choice(PHOTO_STYLES)} photo of {subject}"
        return f"{photo}, {cue}, {setting}, {tags}", f"{photo}, {clothes}, {clean_act} {setting}, {tags}"
    if frame == 0:
        dirty = f"{subject} {act} {setting}, {cue}, {by}, {tags}"
    elif frame == 1:
        dirty = f"{cue}, {subject} {setting}, {by}, {tags}"
    else:
        dirty = f"{tags}, {subject}, {cue}, {act} {setting}, {by}"
    if frame == 0:
        clean = f"{subject} {clean_act} {setting}, {clothes}, {by}, {tags}"
    elif frame == 1:
        clean = f"{clothes}, {subject} {setting}, {by}, {tags}"
    else:
        clean = f"{tags}, {subject}, {clothes}, {clean_act} {setting}, {by}"
    return dirty, clean


def _mangle(rng: random.Random, word: str) -> str:
    """Break a word the way optimised jailbreak prompts do: glue, cut or misspell it."""
    r = rng.random()
    if r < 0.25:
        return word + rng.choice(SOUP_WORDS)
    if r < 0.4:
        return rng.choice(JUNK[5:]) + word
    if r < 0.55 and len(word) > 4:
        i = rng.randrange(1, len(word) - 1)
        return word[:i] + word[i + 1:]
    return word


def soup(rng: random.Random, cues: list[str], n_cues: int, context: list[str] | None = None) -> str:
    """A Ring-A-Bell-like token soup: `n_cues` (mangled) words from `cues`, up to three `context`
    words, neutral filler and junk."""
    words = [rng.choice(SOUP_WORDS) for _ in range(rng.randint(6, 16))]
    words += [_mangle(rng, rng.choice(cues)) for _ in range(n_cues)]
    words += rng.sample(context, rng.randint(0, 3)) if context else []
    words += [rng.choice(JUNK) for _ in range(rng.randint(0, 4))]
    rng.shuffle(words)
    return " ".join(words)


def violence_pair(rng: random.Random) -> tuple[str, str]:
    subject, setting = rng.choice(VIOLENCE_SUBJECTS), rng.choice(VIOLENCE_SETTINGS)
    style = ", ".join(_pick(rng, VIOLENCE_STYLE, rng.randint(1, 3)))
    return (f"{subject} {rng.choice(VIOLENCE_ACTS)} {setting}, {style}",
            f"{subject} {rng.choice(VIOLENCE_CLEAN)} {setting}, {style}")


def tricky(rng: random.Random) -> str:
    return rng.choice(TRICKY_FRAMES).format(rng.choice(TRICKY))


def _write(name: str, prompts: list[str], label: str, kind: str) -> None:
    unique = list(dict.fromkeys(prompts))
    with (OUT / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for prompt in unique:
            f.write(json.dumps({"prompt": prompt, "label": label, "kind": kind}, ensure_ascii=False) + "\n")
    print(f"{name}: {len(unique)}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{SEED}:artistic")
    pairs = [artistic_pair(rng) for _ in range(N_ARTISTIC)]
    _write("sexual_artistic", [d for d, _ in pairs], "sexual", "artist")
    _write("benign_artistic_twins", [c for _, c in pairs], "benign", "twin")
    rng = random.Random(f"{SEED}:soup")
    _write("sexual_soup", [soup(rng, NUDE_FRAGMENTS, rng.randint(1, 5), SOUP_SUGGESTIVE) for _ in range(N_SOUP)], "sexual", "soup")
    _write("benign_soup", [soup(rng, NEUTRAL_CUES, rng.randint(1, 4)) for _ in range(N_SOUP)], "benign", "soup")
    rng = random.Random(f"{SEED}:violence")
    pairs = [violence_pair(rng) for _ in range(N_VIOLENCE)]
    _write("violence_written", [d for d, _ in pairs], "violence", "written")
    _write("benign_violence_twins", [c for _, c in pairs], "benign", "twin")
    rng = random.Random(f"{SEED}:tricky")
    _write("benign_tricky", [tricky(rng) for _ in range(N_TRICKY)], "benign", "tricky")
    rng = random.Random(f"{SEED}:sd-style")
    _write("benign_sd_style", [sd_style(rng) for _ in range(N_SD_STYLE)], "benign", "sd-style")


if __name__ == "__main__":
    main()
