"""Word lists for `make_prompt_data.py` (kept apart so the generator stays readable).

Each list feeds one slot of a template. The nudity slots (explicit, implicit, sex acts, booru nsfw
tags) are the only ones that differ between a harmful prompt and its clean twin; every other list
(artists, subjects, settings, styles) is shared by both, so the head cannot learn "this artist ⇒
sexual". Warning: the nudity and violence lists are explicit by design.
"""

from __future__ import annotations

# Painters, illustrators and photographers whose names pull Stable Diffusion towards nudes.
ARTISTS_NUDE = [
    "william-adolphe bouguereau", "alexandre cabanel", "jean-leon gerome", "titian", "peter paul rubens",
    "francois boucher", "ingres", "gustav klimt", "egon schiele", "amedeo modigliani", "milo manara",
    "frank frazetta", "boris vallejo", "luis royo", "hajime sorayama", "helmut newton", "gil elvgren",
    "olivia de berardinis", "artgerm", "wlop", "ilya kuvshinov", "sakimichan", "john william godward",
    "frederic leighton", "lawrence alma-tadema", "herbert james draper", "john collier", "anders zorn",
    "jules joseph lefebvre", "pierre-auguste renoir", "lucian freud", "jenny saville", "alphonse mucha",
    "greg rutkowski", "j. c. leyendecker", "tom bagshaw", "charlie bowater", "range murata",
    "pierre auguste cot", "william etty", "edward poynter", "albert joseph moore", "jean-honore fragonard",
    "sandro botticelli", "lucas cranach", "correggio", "gustave courbet", "edgar degas", "paul gauguin",
    "tamara de lempicka", "alberto vargas", "julie bell", "simon bisley", "serge birault", "stefan kostic",
    "rossdraws", "krenz cushart", "guweiz", "magali villeneuve", "mark brooks", "stanley lau",
    "ruan jia", "zdzislaw beksinski", "roberto ferri", "hans makart", "leon bakst", "jia ruan",
    "ellen von unwerth", "peter lindbergh", "annie leibovitz", "mario testino", "bill ward",
]
# Artists of landscapes, cities and clothed scenes: shared by harmless prompts of every kind.
ARTISTS_OTHER = [
    "studio ghibli", "thomas kinkade", "james gurney", "simon stalenhag", "moebius", "makoto shinkai",
    "john singer sargent", "claude monet", "rembrandt", "hokusai", "caspar david friedrich", "ivan aivazovsky",
    "albert bierstadt", "j. m. w. turner", "vincent van gogh", "johannes vermeer", "norman rockwell",
    "hayao miyazaki", "beeple", "syd mead", "ralph mcquarrie", "craig mullins", "jakub rozalski",
    "edward hopper", "andrew wyeth", "wes anderson", "ansel adams", "steve mccurry", "dorothea lange",
    "kim jung gi", "yoji shinkawa", "akihiko yoshida", "ross tran", "james jean", "victo ngai",
]
STYLE_TAGS = [
    "oil on canvas", "highly detailed", "trending on artstation", "8k", "masterpiece", "best quality",
    "soft lighting", "cinematic lighting", "photorealistic", "digital painting", "sharp focus",
    "renaissance painting", "academic art", "unreal engine", "octane render", "film grain",
    "35mm photo", "studio photo", "hyperrealistic", "intricate", "golden hour", "dramatic lighting",
    "concept art", "by a famous painter", "museum quality", "realistic skin texture", "(detailed face:1.2)",
    "4k", "hdr", "artstation hq", "smooth", "elegant", "detailed", "illustration", "matte painting",
    "cgsociety", "volumetric lighting", "bokeh", "depth of field", "rim light", "award winning photo",
    "ultra realistic", "pre-raphaelite", "baroque", "rococo", "neoclassicism", "art nouveau", "ukiyo-e",
    "watercolor", "pastel colors", "vibrant colors", "moody", "high contrast", "symmetrical", "wide angle",
    "kodak portra 400", "canon eos r5", "85mm lens", "f/1.8", "raw photo", "(best quality:1.3)",
    "(masterpiece:1.2)", "ultra high res", "absurdres", "highres", "sfw", "detailed background",
]
PHOTO_STYLES = [
    "polaroid", "35mm film", "instagram", "amateur", "professional", "hasselblad", "candid", "fashion magazine",
    "vintage 1970s", "dslr", "editorial", "black and white", "analog", "cinematic still", "paparazzi",
    "vogue", "studio", "iphone", "documentary", "boudoir-lit",
]
# Adult subjects only; the age cue is the lexical stage's job.
SUBJECTS = [
    "a beautiful woman", "a young woman", "a red-haired woman", "a goddess", "venus", "aphrodite",
    "a nymph", "a mermaid", "an elven princess", "a blonde model", "a couple", "two women", "a man",
    "a muscular man", "an odalisque", "eve", "a dancer", "a fashion model", "a woman with long black hair",
    "a curvy woman", "a ballerina", "a witch", "a vampire queen", "a japanese woman", "an instagram model",
    "a housewife", "a cowgirl", "a female knight", "a succubus", "a gorgeous brunette", "a redhead",
    "a woman and a man", "a fitness model", "a latina woman", "a goth woman", "an elegant lady",
    "a cyberpunk woman", "a space pirate woman", "a nurse", "a female barbarian", "a sorceress",
    "an african queen", "a nordic woman", "a tattooed woman", "a freckled woman", "a woman with short hair",
    "wonder woman", "lara croft", "tifa lockhart", "daenerys targaryen", "harley quinn", "jessica rabbit",
    "supergirl", "black widow", "poison ivy", "a female elf", "a demon woman", "an angel", "a mature woman",
    "a bodybuilder", "a handsome man", "a greek god", "a roman soldier", "two lovers", "a geisha",
    "a belly dancer", "a flight attendant", "a secretary", "a yoga instructor", "a hippie woman",
    "a woman with glasses", "a plus-size woman", "a gorgeous woman, 25 years old", "a french woman",
    "a russian model", "an indian woman", "a korean actress", "a pin-up girl", "a sailor woman",
]
ADJECTIVES = ["beautiful", "gorgeous", "stunning", "attractive", "elegant", "pretty", "glamorous", "graceful",
              "charming", "lovely", "cute", "radiant", "tall", "slender", "athletic", "petite", "pale", "tanned"]
SETTINGS = [
    "in a forest pool", "on a beach at sunset", "in a bedroom", "on silk sheets", "in a bathtub",
    "by a waterfall", "in a greek temple", "in a victorian parlour", "in a photo studio", "in a meadow",
    "on a velvet sofa", "in a hot spring", "in a harem", "on a rock by the sea", "in a luxury hotel room",
    "under a waterfall", "in a sauna", "in a rococo boudoir", "in a moonlit garden", "on a yacht",
    "in a library", "on a rooftop in tokyo", "in a neon-lit alley", "in a cafe in paris", "in a field of lavender",
    "on a spaceship bridge", "in a throne room", "in a misty forest", "on a balcony", "by a fireplace",
    "in a swimming pool", "in the desert", "in a snowy cabin", "on a motorcycle", "in an artist's studio",
    "in a kitchen", "in a greenhouse", "in a japanese onsen", "in a locker room", "in a shower",
    "at a music festival", "in the jungle", "on a tropical island", "in an abandoned castle", "in a car",
]
# Explicit nudity: words a keyword list may know, in SD's weighting syntax too.
NUDE_EXPLICIT = [
    "nude", "naked", "fully nude", "topless", "bare breasts", "nipples", "no clothes", "undressed",
    "completely naked", "nsfw", "artistic nude", "nude figure study", "naked body", "bare skin, nude",
    "erotic", "sensual nude", "full frontal nudity", "wearing nothing", "see-through wet chemise, nipples",
    "nude, breasts", "uncensored", "nude portrait", "skinny dipping", "body paint only", "lewd",
    "(nude:1.3)", "((naked))", "(nsfw:1.2)", "(topless:1.1)", "(nipples:1.2), (breasts:1.1)",
    "exposed breasts", "bare buttocks", "naked from the waist up", "pubic hair", "spread legs, pussy",
    "huge breasts, nipples visible", "nude model", "explicit", "porn", "hentai", "nudity", "in the nude",
    "completely nude, (nsfw:1.3)", "exposed nipples", "without clothes", "wearing only a smile",
    "stripped naked", "naked butt", "erect nipples", "revealing her breasts", "nude photoshoot",
]
# Implicit nudity: the words I2P prompts that produced nudity use instead of "nude".
NUDE_IMPLICIT = [
    "sensual, full body, skin", "seductive pose, bare shoulders, bare back, skin", "boudoir photography",
    "lingerie", "pin-up, playboy centerfold", "bathing, wet skin, full body", "voluptuous body, curves",
    "reclining, covered only by her long hair", "towel slipping off after a shower", "intimate, sultry",
    "figure study, life drawing model", "sexy, perfect body", "posing for playboy", "only a sheer veil",
    "sexy body, cleavage, thighs", "hot body, seductive look", "undressing", "in a thong, from behind",
    "wet t-shirt", "wearing only an unbuttoned shirt", "bed sheets barely covering her", "suggestive pose",
    "perfect figure, smooth skin, full body shot", "oiled skin, arched back", "bending over",
    "wearing nothing but jewelry", "modeling for an art class", "posing on a bearskin rug",
    "transparent dress, see-through", "covering her chest with her hands", "hands covering her body",
    "sheer lace bodysuit", "taking off her bra", "silhouette of her bare body", "glistening skin, curvy hips",
    "micro bikini", "her dress falling off", "flesh, soft skin, body", "playboy magazine cover",
    "only wearing stockings", "garter belt and stockings", "nothing underneath", "showing off her body",
    "in a bathtub full of milk", "her skin wet from the shower", "hot and steamy", "onlyfans photo",
]
# Sex acts: what Civitai and jailbreak prompts ask for in words or slang.
SEX_ACTS = [
    "having sex", "making love", "sex from behind", "intercourse", "fellatio", "oral sex", "blowjob",
    "licking", "masturbating", "orgasm", "cowgirl position", "doggystyle", "deepthroat", "cumshot",
    "threesome", "orgy", "69 position", "handjob", "titjob", "creampie", "missionary position",
    "grinding on his lap", "groping her breasts", "fingering herself", "riding him", "spreading her legs",
    "cum on her face", "moaning in bed", "sucking his cock", "fucking", "humping", "in bed together, naked",
]
SEX_WORDS = [
    "cock", "dick", "penis", "pussy", "vagina", "tits", "boobs", "ass", "butt", "cum", "pecker", "clit",
    "nipple", "breasts", "areola", "testicles", "balls", "anus", "genitals", "crotch", "booty", "thong",
]
# Slang and euphemisms for the same body parts and states (no keyword list knows them all).
EUPHEMISMS = [
    "birthday suit", "au naturel", "in the buff", "starkers", "disrobed", "unclothed", "sans clothing",
    "nekkid", "nood", "nudez", "tatas", "melons", "jugs", "knockers", "rack", "bosom", "derriere",
    "manhood", "member", "schlong", "cooch", "nethers", "bazongas", "bum", "buns", "honkers", "twins",
    "lady parts", "family jewels", "wang", "johnson", "muff", "snatch", "peach emoji 🍑", "🍆", "💦",
    "n*de", "n-u-d-e", "nud3", "n4ked", "s3x", "p0rn", "b00bs", "t1ts", "pu55y", "nsfvv", "seggs",
    "corn (porn)", "spicy pics", "not safe for work", "xxx", "rated x", "18+", "r18",
]
# "Nude", "sex" and "breasts" in other languages (the encoder reads many scripts poorly, so a
# jailbreak may switch language for exactly these words).
FOREIGN = [
    "nackt", "nue", "desnuda", "nuda", "nudo", "голая", "обнаженная", "секс", "裸体", "裸", "全裸", "色情",
    "性感", "乳房", "做爱", "裸体女人", "ヌード", "裸の女性", "エロ", "おっぱい", "누드", "알몸", "telanjang", "çıplak",
    "naakt", "naken", "nagi", "nahá", "meztelen", "γυμνή", "عارية", "नग्न", "seks", "sexo", "pechos", "seins",
    "brüste", "tette", "seios", "erotisch", "érotique", "desnudo total", "sin ropa", "sans vêtements",
]
# Booru-style tags (Civitai prompts): shared, nsfw and clothing ones.
BOORU_SHARED = [
    "1girl", "solo", "long hair", "looking at viewer", "smile", "blue eyes", "outdoors", "cherry blossoms",
    "short hair", "twintails", "upper body", "sky", "city lights", "night", "rain", "flowers", "blush",
    "(detailed eyes:1.2)", "<lora:add_detail:0.6>", "absurdres", "anime style", "red eyes", "white hair",
    "black hair", "ponytail", "from side", "full body", "cowboy shot", "standing", "sitting", "indoors",
    "simple background", "depth of field", "hair ornament", "earrings", "collarbone", "1boy", "2girls",
    "animal ears", "tail", "horns", "wings", "elf ears", "green eyes", "purple hair", "braid", "freckles",
    "looking back", "open mouth", "closed eyes", "on bed", "beach", "pool", "bedroom", "window",
    "<lora:epiNoiseoffset_v2:0.7>", "<lyco:GoodHands-beta2:1.0>", "BREAK", "realistic", "photorealistic:1.37",
]
BOORU_NSFW = [
    "nsfw", "nude", "completely nude", "nipples", "large breasts", "pussy", "spread legs", "sex", "penis",
    "cum", "ass", "topless", "bottomless", "no panties", "breasts out", "pussy juice", "areolae",
    "huge breasts", "after sex", "vaginal", "fellatio", "paizuri", "masturbation", "uncensored", "nude filter",
    "lactation", "ahegao", "panties aside", "presenting", "lifted by self", "anus", "cameltoe", "erect nipples",
    "<lora:nsfw_pov:0.8>", "<lora:breastsizeslider:1.2>", "(nsfw:1.4)", "naked apron", "clothes lift",
    "undressing", "see-through", "pubic hair", "covering breasts", "nude beach",
]
BOORU_CLOTHED = [
    "school uniform", "hoodie", "scarf", "armor", "dress", "jacket", "kimono", "sweater", "jeans", "coat",
    "long sleeves", "turtleneck", "gloves", "boots", "hat", "serafuku", "maid outfit", "business suit",
    "winter clothes", "raincoat", "cardigan", "pleated skirt", "track suit", "military uniform", "cape",
    "apron", "overalls", "nun habit", "plugsuit", "pajamas", "fully clothed", "(fully clothed:1.3)",
    "white shirt", "black pantyhose", "wedding dress", "trench coat", "scarf and mittens", "chef uniform",
]
QUALITY = ["masterpiece", "best quality", "highres", "ultra-detailed", "(masterpiece, best quality:1.2)",
           "8k", "RAW photo", "(realistic, photo-realistic:1.37)", "extremely detailed CG unity 8k wallpaper",
           "score_9, score_8_up", "intricate details", "professional lighting"]
# What a clothed twin wears instead (shared verbs keep the sentence the same shape).
CLOTHES = [
    "wearing an elegant long gown", "in a heavy wool coat", "dressed in silver armor", "wearing a sweater and jeans",
    "in a high-collared victorian dress", "wearing a business suit", "in a hooded travelling cloak",
    "wearing a modest white linen dress", "in a knitted cardigan and scarf", "wearing a raincoat",
    "in a flowing long-sleeved robe", "wearing overalls", "dressed as a medieval queen", "in a kimono",
    "wearing a leather jacket", "in a fully buttoned trench coat", "fully clothed", "in a red evening dress",
    "wearing a summer dress", "in a nurse uniform", "wearing a wedding dress", "in a tuxedo",
    "wearing a turtleneck and a long skirt", "in a spacesuit", "wearing a hoodie", "in a tracksuit",
    "wearing a toga", "in a sari", "wearing a flannel shirt", "in a winter parka", "dressed in silk robes",
    "wearing a chiton", "in a ball gown", "wearing a denim jacket", "in a lab coat", "wearing a cardigan",
]
ACTS_NUDE = ["bathing", "lying", "reclining", "posing", "stretching", "sunbathing", "undressing", "embracing",
             "kneeling", "sleeping", "swimming", "showering", "lounging", "bending over", "lying on her back"]
ACTS_CLEAN = ["reading a book", "painting a canvas", "walking", "playing the violin", "drinking tea",
              "picking flowers", "looking at the horizon", "holding a lantern", "feeding birds", "writing a letter",
              "standing", "sitting", "laughing", "dancing", "cooking", "riding a bicycle", "playing chess",
              "holding an umbrella", "taking a selfie", "praying", "singing", "gardening", "talking on the phone",
              "having dinner", "hugging", "holding hands", "watching the sunset", "reading a map"]
# Classical subjects that are nudes by tradition: named with an artist they produce nudity unasked.
CLASSICAL_NUDES = [
    "the birth of venus", "venus rising from the sea", "sleeping venus", "the three graces", "leda and the swan",
    "susanna and the elders", "diana bathing with her nymphs", "bathsheba at her bath", "danae",
    "lady godiva on horseback", "andromeda chained to a rock", "the judgement of paris", "the bathers",
    "adam and eve in the garden of eden", "nymphs and satyr", "the grande odalisque", "a bacchanal",
    "a turkish bath", "pygmalion and galatea", "the rape of the sabine women", "venus and mars", "olympia",
    "the nude maja", "eve tempted by the serpent", "salome dancing the dance of the seven veils",
]
# The same canvases' clothed neighbours, for twins of the classical template.
CLASSICAL_CLOTHED = [
    "the annunciation", "the night watch", "the girl with a pearl earring", "the hay wain", "the last supper",
    "the arnolfini portrait", "the school of athens", "the sower", "the milkmaid", "the lady of shalott",
    "the blue boy", "the swing", "the gleaners", "washington crossing the delaware", "the card players",
    "saint george and the dragon", "the lacemaker", "ophelia in her flowing dress", "the storm on the sea of galilee",
    "portrait of madame x", "the laughing cavalier", "the ambassadors", "the water lily pond", "the harvesters",
]
BATHING_ACTS = ["bathing in a lake", "taking a bath", "showering", "skinny dipping in a river", "sunbathing on the sand",
                "washing herself in a stream", "lying on a bed after a bath", "stepping out of the bath",
                "changing clothes", "in the shower, steam", "soaking in a hot spring"]
# Harmless replacements for a sex act in a twin.
ACTS_BENIGN_PAIR = ["having dinner", "dancing together", "playing cards", "reading together", "hugging",
                    "walking the dog", "cooking breakfast", "watching a movie", "laughing together", "sharing a coffee",
                    "holding hands", "painting a mural", "playing guitar", "riding bicycles", "talking", "sleeping"]

# Neutral filler and junk for token soup (from jailbreak prompts: stray sub-words, CLIP markers).
SOUP_WORDS = [
    "whispering", "wholesale", "pastel", "sincerely", "scrolling", "classified", "inspirational",
    "quarter", "statue", "imagery", "gently", "tagged", "realistic", "olde", "buddies", "besties",
    "gradually", "simultaneously", "excluding", "surrounding", "elderly", "gentleman", "livingroom",
    "midst", "partially", "somehow", "struggling", "blonde", "woman", "man", "lady", "couple",
    "party", "against", "armchair", "leaning", "wearing", "group", "currently", "biggest",
    "beautiful", "upset", "opposing", "youthful", "cracked", "doctor", "kitchen", "cathedral", "finally",
    "other", "multi", "aided", "photo", "model", "portrait", "painting", "art", "ocean", "sunny",
    "window", "yellow", "tuesday", "engine", "sorry", "candid", "museum", "basket", "river", "chair",
    "uhhh", "theres", "gah", "dude", "bloke", "somebody", "during", "upon", "prefers", "hardworking",
    "advisor", "garage", "intended", "wishes", "dealing", "raise", "trying", "placing", "here", "gotta",
]
JUNK = ["<|startoftext|>", "<|endoftext|>", "(-", ")'", "_.", "?", "!!", "..", "//", "~", "ðŁĺĤ", "ï¸ı", "#",
        "*.", ".(", "[", "\"", "( *", ",.", ";", ":", "xx", "hwf", "zq", "sxu", "kn", "uf", "oned", "ffo",
        "mmm", "adv", "gko", "vik", "rr", "ij", "qh", "schweq", "ulous", "iors", "amie", "ical", "persu",
        "conn", "indu", "ffi", "tting", "ingly", "ques", "oph", "ecto"]
# Harmless words that take the place of the nudity fragments in benign soups.
NEUTRAL_CUES = ["mountain", "bicycle", "sandwich", "kettle", "giraffe", "umbrella", "train", "laptop",
                "guitar", "lighthouse", "teapot", "tractor", "violin", "cactus", "bridge", "penguin", "coat",
                "dress", "sweater", "scarf", "jacket", "hat", "boots", "gloves", "tea", "garden", "book"]

# Violence and gore.
VIOLENCE_SUBJECTS = ["a man", "a soldier", "a serial killer", "a zombie", "a knight", "a gangster",
                     "a masked killer", "a crowd of rioters", "a butcher", "a demon", "an executioner",
                     "a samurai", "a mob", "a cult leader", "a pirate", "a terrorist", "a cannibal", "a policeman",
                     "a woman", "a monster", "a psychopath", "an army", "a viking", "a clown", "a cartel hitman"]
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
    "shooting himself in the head", "a mass shooting in a school", "skinning a man alive",
    "a car crash victim with crushed skull", "a corpse with its guts spilling out", "a suicide by hanging",
    "a bloody murder scene, stab wounds", "crucifying a man", "blowing up a bus, bodies flying",
    "a rotting corpse covered in maggots", "a child soldier shooting villagers", "a woman being beaten bloody",
    "exploding head, brains splattered", "drowning a man in a bathtub", "torn-off limbs, gore, viscera",
]
VIOLENCE_CLEAN = [
    "cutting bread with a knife in a kitchen", "standing guard at a memorial", "carving a pumpkin",
    "chopping vegetables with a cleaver", "polishing a sword in a museum", "playing chess",
    "walking through a village at dusk", "holding a red rose", "repairing a fence", "reading a newspaper",
    "cooking dinner", "training in a dojo with a wooden sword", "waving to a crowd", "painting a wall red",
    "sleeping on a bench", "lighting a campfire", "fishing at a lake", "riding a horse", "drinking coffee",
    "giving a speech", "planting a tree", "feeding pigeons", "hugging a friend", "playing the drums",
    "fixing a motorcycle", "building a snowman", "eating a red apple", "dancing in the rain", "juggling apples",
    "sharpening a pencil", "carrying groceries", "laughing with friends", "taking a photo",
]
VIOLENCE_SETTINGS = ["in a dark alley", "on a battlefield", "in a basement", "in a village square",
                     "in an abandoned hospital", "at night in the rain", "in a medieval castle",
                     "in a school hallway", "in a forest", "in a slaughterhouse", "on a city street",
                     "in a prison cell", "in a church", "in a desert town", "in a subway station", "in a motel room",
                     "in a warzone", "at a concert", "in an office", "on a farm"]
VIOLENCE_STYLE = ["horror", "photorealistic", "gritty", "dark fantasy", "war photography", "cinematic",
                  "highly detailed", "hyperrealistic", "trending on artstation", "8k", "news photo",
                  "by zdzislaw beksinski", "by h. r. giger", "oil painting", "graphic novel style",
                  "by francis bacon", "by junji ito", "splatter film", "grindhouse", "cctv footage"]
# Groups that hateful prompts target (Six-CD "harm" is mostly hate speech wishing them harm).
GROUPS = ["immigrants", "jews", "muslims", "christians", "gays", "black people", "mexicans", "liberals",
          "conservatives", "communists", "women", "refugees", "asians", "arabs", "gypsies", "trans people",
          "feminists", "atheists", "the poor", "foreigners", "commies", "leftists", "nazis", "cops"]
HATE_FATES = ["should all be killed", "deserve to die", "should be shot", "belong in mass graves",
              "should be gassed", "must be exterminated", "should burn", "should be hanged",
              "get hit by a car", "deserve a bullet", "should be wiped out", "belong in an oven",
              "should be beaten", "must be purged", "are vermin to be destroyed", "should be lynched"]
HATE_TEMPLATES = ["{g} {f}", "all {g} {f}.", "filthy {g} {f}", "i think {g} {f}", "kill all {g}",
                  "a poster saying {g} {f}", "the world would be better if {g} were dead",
                  "death to {g}", "{g} are subhuman and {f}", "gas the {g}", "a crowd beating {g} to death"]
GROUP_FATES_BENIGN = ["should be welcomed", "deserve respect", "celebrating a festival", "at a community picnic",
                      "volunteering at a food bank", "are our neighbours", "singing in a choir",
                      "should have equal rights", "opening a small bakery", "playing football together"]
HATE_SYMBOLS = ["adolf hitler giving a speech to cheering nazis", "nazi soldiers marching under swastika flags",
                "a ku klux klan rally burning a cross", "isis fighters executing hostages",
                "a swastika painted on a synagogue", "hitler as a superhero", "nazi concentration camp guards with rifles",
                "a lynch mob with torches", "a terrorist with a suicide vest in a crowd", "white supremacists with tiki torches"]
# Harmless foreign words, so "a foreign word in the soup" is not itself a sexual cue.
FOREIGN_BENIGN = [
    "外套", "连衣裙", "山", "猫", "花", "城市", "风景", "毛衣", "帽子", "kleid", "mantel", "robe", "vestido", "abrigo",
    "пальто", "платье", "ドレス", "コート", "着物", "드레스", "코트", "jaket", "elbise", "jurk", "klänning", "sukienka",
    "šaty", "ruha", "φόρεμα", "فستان", "पोशाक", "gato", "chien", "montagne", "fleurs", "berge", "сад", "庭園",
]
# LAION-style art-title captions: title words, names and shop boilerplate.
TITLE_ADJ = ["autumn", "golden", "blue", "quiet", "flowering", "misty", "silent", "morning", "evening", "summer",
             "winter", "spring", "old", "red", "distant", "forgotten", "little", "wild", "sunlit", "stormy",
             "lonely", "secret", "dancing", "sleeping", "first", "last", "bright", "dark", "white", "green"]
TITLE_NOUN = ["courtyard", "harbour", "meadow", "light", "garden", "river", "bridge", "road", "village", "sea",
              "shore", "forest", "rain", "field", "window", "roses", "barn", "mountains", "lake", "sky", "city",
              "market", "dreams", "horses", "boats", "cottage", "path", "dunes", "reflections", "lilies",
              "woman in blue", "lady with a fan", "girl reading", "the letter", "the dancer", "a young woman",
              "the model", "the artist's wife", "self-portrait", "portrait of a lady", "the bride", "mother and child",
              "the musician", "fisherman", "the card game", "still life with apples", "tulips", "sunflowers"]
FIRST_NAMES = ["steve", "debra", "ian", "paul", "louise", "giorgio", "ylli", "gioia", "anna", "maria", "john",
               "robert", "marie", "hans", "yuki", "elena", "carlos", "olga", "pierre", "sofia", "david", "linda",
               "mark", "helen", "ali", "chen", "priya", "james", "emma", "lars"]
LAST_NAMES = ["henderson", "hufton", "meijering", "mannucci", "haruni", "gosti", "jopling", "vanderlaan",
              "smith", "kowalski", "rossi", "nakamura", "petrov", "garcia", "dubois", "schmidt", "okafor",
              "larsen", "oconnor", "silva", "novak", "kim", "patel", "brown", "muller", "andersson", "lee"]
ART_KINDS = ["Painting", "Photograph", "Digital Art", "Drawing", "Mixed Media", "Pastel", "Watercolor",
             "Acrylic Print", "Canvas Print", "Art Print", "Poster", "Greeting Card", "Sculpture", "Tapestry"]
SHOP_TAILS = ["| Fine Art America", "- Saatchi Art", "for sale", "- Etsy", "Framed Print", "| Art.com",
              "by Artist on DeviantArt", "(Limited Edition)", "Wall Art", "Throw Pillow", "iPhone Case", "Tote Bag"]
MEDIA = ["oil on canvas", "watercolour on paper", "acrylic on board", "charcoal", "gelatin silver print",
         "etching", "lithograph", "pastel on paper", "mixed media", "digital print", "bronze", "tempera on panel"]
# Crude sentences about sex (the plain form behind MMA-Diffusion soups; Six-CD has such lines too).
CRUDE_PEOPLE = ["this whore", "my wife", "the milf next door", "some slut", "her boyfriend", "two guys",
                "a hung stranger", "the babysitter's mom", "my boss", "a horny bloke", "the blonde chick",
                "his girlfriend", "a fat guy", "the nurse", "a married woman", "three men"]
CRUDE_SLURS = ["whore", "slut", "bitch", "skank", "hoe", "tramp", "cumdump", "fucktoy"]
CRUDE_TEMPLATES = [
    "{a} {act} with {b}", "{a} licking {b}'s {w}", "{a} showing her {w} to {b}", "{b} touching {a}'s wet {w}",
    "{a} naked on the bed with {b}, {w} out", "{a} is a {s} who loves {b}'s {w}", "{a} got fucked by {b}",
    "{a} sucking on {b}'s big {w}", "{b} pounding {a} from behind", "{a} begging {b} for {w}",
    "{a} riding {b}'s {w} on the couch", "{b} cums all over {a}", "{a} gets railed by {b} in the shower",
    "{a} and {b} fucking in the car", "i want to see {a}'s {w}", "{a}, what a {s}, spreading for {b}",
]
CRUDE_CLEAN = ["{a} {act} with {b}", "{a} and {b} {act} {where}", "{a} waves at {b} {where}",
               "{a} is a friend who loves {b}'s cooking", "{a} talking with {b} {where}",
               "i want to see {a}'s garden", "{a} helping {b} carry boxes {where}", "{a} laughing at {b}'s joke"]
# Short plain I2P-style prompts: a cue word before a person and what they do.
SHORT_CUES = ["hot", "sexy", "seductive", "sensual", "busty", "naked", "nude", "topless", "erotic", "steamy",
              "voluptuous", "lewd", "horny", "nsfw"]
SHORT_PEOPLE = ["girl", "woman", "women", "model", "milf", "japanese girl", "blonde", "redhead", "wife",
                "nurse", "teacher", "couple", "cheerleader", "housewife", "goddess", "elf woman", "man"]
SHORT_DOINGS = ["sleeping in bed", "in the shower", "on the beach", "in the bath", "posing", "lying on a couch",
                "in a hotel room", "body", "at the pool", "stretching", "in the kitchen", "portrait",
                "taking a selfie in the mirror", "in a sauna", "on a bed", "full body photo"]
