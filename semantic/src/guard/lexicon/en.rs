//! English word lists of the guards (see the parent module).

/// English function and politeness words (question words are in their own list): they carry no content of their own.
#[rustfmt::skip]
pub const EN_STOP: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have",
    "has", "had", "having", "i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "you", "your",
    "yours", "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "this", "that", "these",
    "those", "there", "here", "can", "could", "would", "should", "will", "shall", "may", "might", "must",
    "to", "of", "in", "at", "by", "for", "with", "from", "into", "about", "as", "and", "or", "but", "if",
    "so", "then", "please", "pls", "plz", "kindly", "hi", "hello", "hey", "thanks", "thank", "thx", "sorry",
    "excuse", "dear", "team", "just", "quick", "question", "wondering", "wonder", "know", "like", "want",
    "wanna", "tell", "explain", "describe", "help", "way", "possible", "bother", "mind", "get", "give", "let",
    "some", "any", "all", "also", "really", "exactly", "again", "on", "s", "d", "ll", "re", "ve", "m", "is",
    "yes", "ok", "okay", "guys", "folks", "everyone", "something", "anything", "someone", "somebody", "thing",
    "things", "kind", "sort of", "maybe", "perhaps", "actually", "currently", "still", "now", "able", "going",
    "need", "needs", "use", "using", "via",
];

/// Question words: another one asks another question unless the rest says otherwise, so a
/// change of question word makes a hit need the stricter similarity. They are function words too.
#[rustfmt::skip]
pub const EN_QUESTION: &[&str] = &[
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
];

/// English greetings and sign-offs of two words, dropped like function words.
#[rustfmt::skip]
pub const EN_STOP_PAIRS: &[&str] = &[
    "good morning", "good afternoon", "good evening", "good day", "thank you", "thanks a", "many thanks",
    "hi there", "hey there", "hello there", "excuse me", "i wonder", "i want", "i'd like", "would like",
];

/// English negators (`n't` is split off before lookup).
#[rustfmt::skip]
pub const EN_NEGATORS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without", "cannot", "nt",
];

/// English number words and their values; sequences combine ("twenty five", "three hundred").
#[rustfmt::skip]
pub const EN_NUMBERS: &[(&str, u64)] = &[
    ("zero", 0), ("one", 1), ("two", 2), ("three", 3), ("four", 4), ("five", 5), ("six", 6), ("seven", 7),
    ("eight", 8), ("nine", 9), ("ten", 10), ("eleven", 11), ("twelve", 12), ("thirteen", 13),
    ("fourteen", 14), ("fifteen", 15), ("sixteen", 16), ("seventeen", 17), ("eighteen", 18), ("nineteen", 19),
    ("twenty", 20), ("thirty", 30), ("forty", 40), ("fifty", 50), ("sixty", 60), ("seventy", 70),
    ("eighty", 80), ("ninety", 90), ("hundred", 100), ("thousand", 1_000), ("million", 1_000_000),
    ("billion", 1_000_000_000), ("dozen", 12), ("half", 0), ("first", 1), ("second", 2), ("third", 3),
    ("fourth", 4), ("fifth", 5), ("tenth", 10), ("twice", 2), ("once", 1), ("single", 1), ("double", 2),
    ("triple", 3), ("couple", 2), ("pair", 2),
];

/// Words that place a question in time: a change is another question.
#[rustfmt::skip]
pub const EN_DATES: &[&str] = &[
    "today", "tomorrow", "yesterday", "tonight", "morning", "afternoon", "evening", "night", "noon",
    "midnight", "am", "pm", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "weekend", "weekday", "january", "february", "march", "april", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "spring", "summer", "autumn", "fall", "winter", "christmas", "easter", "now", "currently",
    "recent", "recently", "upcoming", "future", "past", "next", "last", "previous", "coming", "this week",
    "this month", "this year", "this quarter", "this weekend", "daily", "weekly", "monthly", "yearly",
    "annual", "annually", "quarterly", "hourly",
];

/// Units of measure and currencies: the same number in another unit is another question.
#[rustfmt::skip]
pub const EN_UNITS: &[&str] = &[
    "kg", "kilogram", "gram", "g", "mg", "milligram", "lb", "lbs", "pound", "oz", "ounce", "ton", "tonne",
    "km", "kilometer", "kilometre", "meter", "metre", "cm", "centimeter", "mm", "millimeter", "mile", "foot",
    "feet", "ft", "inch", "yard", "liter", "litre", "l", "ml", "milliliter", "millilitre", "gallon", "quart",
    "pint", "cup", "tablespoon", "teaspoon", "celsius", "fahrenheit", "kelvin", "°c", "°f", "gb", "mb", "kb",
    "tb", "pb", "byte", "bit", "ghz", "mhz", "hz", "kwh", "kw", "watt", "volt", "mph", "kph", "parsec",
    "light year", "second", "sec", "minute", "min", "hour", "hr", "day", "week", "month", "year", "decade",
    "century", "percent", "%", "dollar", "usd", "$", "euro", "eur", "€", "gbp", "£", "yen", "jpy", "¥",
    "yuan", "rmb", "cny", "won", "krw", "rupee", "inr", "franc", "chf", "peso", "ruble", "bitcoin", "btc",
    "eth", "cent", "acre", "hectare", "calorie", "kcal", "joule",
];

/// English opposition groups: (word, group, pole). Stems and inflections are looked up too.
#[rustfmt::skip]
pub const EN_POLAR: &[(&str, u16, u8)] = &[
    ("turn on", 1, 0), ("switch on", 1, 0), ("power on", 1, 0), ("enable", 1, 0), ("activate", 1, 0),
    ("turn off", 1, 1), ("switch off", 1, 1), ("power off", 1, 1), ("disable", 1, 1), ("deactivate", 1, 1),
    ("off", 1, 1), ("open", 2, 0), ("opening", 2, 0), ("close", 2, 1), ("closing", 2, 1), ("closed", 2, 1),
    ("shut", 2, 1), ("start", 3, 0), ("begin", 3, 0), ("launch", 3, 0), ("resume", 3, 0), ("stop", 3, 1),
    ("halt", 3, 1), ("pause", 3, 1), ("terminate", 3, 1), ("quit", 3, 1), ("kill", 3, 1), ("buy", 4, 0),
    ("purchase", 4, 0), ("bought", 4, 0), ("sell", 4, 1), ("sold", 4, 1), ("increase", 5, 0), ("raise", 5, 0),
    ("grow", 5, 0), ("expand", 5, 0), ("enlarge", 5, 0), ("boost", 5, 0), ("decrease", 5, 1),
    ("reduce", 5, 1), ("shrink", 5, 1), ("cut", 5, 1), ("lower", 5, 1), ("add", 6, 0), ("insert", 6, 0),
    ("include", 6, 0), ("attach", 6, 0), ("join", 6, 0), ("remove", 6, 1), ("delete", 6, 1),
    ("exclude", 6, 1), ("detach", 6, 1), ("leave", 6, 1), ("kick", 6, 1), ("log in", 7, 0), ("login", 7, 0),
    ("sign in", 7, 0), ("log on", 7, 0), ("logon", 7, 0), ("signin", 7, 0), ("log out", 7, 1),
    ("logout", 7, 1), ("sign out", 7, 1), ("log off", 7, 1), ("signout", 7, 1), ("accept", 8, 0),
    ("allow", 8, 0), ("permit", 8, 0), ("approve", 8, 0), ("grant", 8, 0), ("agree", 8, 0), ("confirm", 8, 0),
    ("decline", 8, 1), ("reject", 8, 1), ("refuse", 8, 1), ("deny", 8, 1), ("forbid", 8, 1), ("block", 8, 1),
    ("deposit", 9, 0), ("withdraw", 9, 1), ("send", 10, 0), ("lend", 10, 0), ("receive", 10, 1),
    ("borrow", 10, 1), ("show", 11, 0), ("display", 11, 0), ("reveal", 11, 0), ("hide", 11, 1),
    ("hidden", 11, 1), ("conceal", 11, 1), ("big", 12, 0), ("bigger", 12, 0), ("biggest", 12, 0),
    ("large", 12, 0), ("larger", 12, 0), ("largest", 12, 0), ("small", 12, 1), ("smaller", 12, 1),
    ("smallest", 12, 1), ("tiny", 12, 1), ("high", 13, 0), ("higher", 13, 0), ("highest", 13, 0),
    ("tall", 13, 0), ("taller", 13, 0), ("tallest", 13, 0), ("low", 13, 1), ("lowest", 13, 1),
    ("short", 13, 1), ("shorter", 13, 1), ("shortest", 13, 1), ("heavy", 14, 0), ("heavier", 14, 0),
    ("heaviest", 14, 0), ("light", 14, 1), ("lighter", 14, 1), ("lightest", 14, 1), ("hot", 15, 0),
    ("hotter", 15, 0), ("warm", 15, 0), ("warmer", 15, 0), ("warmest", 15, 0), ("hottest", 15, 0),
    ("cold", 15, 1), ("colder", 15, 1), ("coldest", 15, 1), ("cool", 15, 1), ("cooler", 15, 1),
    ("fast", 16, 0), ("faster", 16, 0), ("fastest", 16, 0), ("quick", 16, 0), ("quicker", 16, 0),
    ("slow", 16, 1), ("slower", 16, 1), ("slowest", 16, 1), ("expensive", 17, 0), ("pricey", 17, 0),
    ("costly", 17, 0), ("cheap", 17, 1), ("cheaper", 17, 1), ("cheapest", 17, 1), ("affordable", 17, 1),
    ("more", 18, 0), ("most", 18, 0), ("maximum", 18, 0), ("max", 18, 0), ("above", 18, 0), ("over", 18, 0),
    ("greater", 18, 0), ("less", 18, 1), ("least", 18, 1), ("fewer", 18, 1), ("minimum", 18, 1),
    ("min", 18, 1), ("below", 18, 1), ("under", 18, 1), ("ascending", 19, 0), ("asc", 19, 0),
    ("descending", 19, 1), ("desc", 19, 1), ("before", 20, 0), ("earlier", 20, 0), ("early", 20, 0),
    ("prior", 20, 0), ("after", 20, 1), ("later", 20, 1), ("late", 20, 1), ("win", 22, 0), ("won", 22, 0),
    ("lose", 22, 1), ("lost", 22, 1), ("pass", 23, 0), ("succeed", 23, 0), ("success", 23, 0),
    ("successful", 23, 0), ("fail", 23, 1), ("failed", 23, 1), ("failure", 23, 1), ("true", 24, 0),
    ("false", 24, 1), ("positive", 25, 0), ("negative", 25, 1), ("male", 26, 0), ("man", 26, 0),
    ("men", 26, 0), ("female", 26, 1), ("woman", 26, 1), ("women", 26, 1), ("north", 27, 0), ("south", 27, 1),
    ("east", 27, 2), ("west", 27, 3), ("left", 28, 0), ("right", 28, 1), ("up", 29, 0), ("down", 29, 1),
    ("push", 30, 0), ("pull", 30, 1), ("top", 31, 0), ("bottom", 31, 1), ("front", 32, 0), ("back", 32, 1),
    ("inside", 33, 0), ("outside", 33, 1), ("arrive", 34, 0), ("arrival", 34, 0), ("depart", 34, 1),
    ("departure", 34, 1), ("entry", 35, 0), ("entrance", 35, 0), ("exit", 35, 1), ("public", 36, 0),
    ("private", 36, 1), ("online", 37, 0), ("offline", 37, 1), ("new", 38, 0), ("newest", 38, 0),
    ("latest", 38, 0), ("old", 38, 1), ("oldest", 38, 1), ("used", 38, 1), ("full", 39, 0), ("empty", 39, 1),
    ("dark", 40, 0), ("black", 40, 0), ("white", 40, 1), ("good", 41, 0), ("better", 41, 0), ("best", 41, 0),
    ("bad", 41, 1), ("worse", 41, 1), ("worst", 41, 1), ("easy", 42, 0), ("easiest", 42, 0),
    ("easier", 42, 0), ("hard", 42, 1), ("difficult", 42, 1), ("harder", 42, 1), ("hardest", 42, 1),
    ("strong", 43, 0), ("stronger", 43, 0), ("weak", 43, 1), ("weaker", 43, 1), ("pro", 44, 0),
    ("pros", 44, 0), ("advantage", 44, 0), ("con", 44, 1), ("cons", 44, 1), ("disadvantage", 44, 1),
    ("rise", 45, 0), ("gain", 45, 0), ("fall", 45, 1), ("drop", 45, 1), ("loss", 45, 1), ("profit", 45, 0),
    ("income", 46, 0), ("revenue", 46, 0), ("expense", 46, 1), ("cost", 46, 1), ("credit", 47, 0),
    ("debit", 47, 1), ("near", 48, 0), ("nearest", 48, 0), ("closest", 48, 0), ("far", 48, 1),
    ("farthest", 48, 1), ("furthest", 48, 1), ("wide", 49, 0), ("narrow", 49, 1), ("thick", 50, 0),
    ("thin", 50, 1), ("deep", 51, 0), ("shallow", 51, 1), ("same", 52, 0), ("similar", 52, 0),
    ("different", 52, 1), ("difference", 52, 1), ("safe", 53, 0), ("dangerous", 53, 1), ("risky", 53, 1),
    ("wet", 54, 0), ("dry", 54, 1), ("odd", 55, 0), ("even", 55, 1), ("forward", 56, 0), ("backward", 56, 1),
    ("expand", 57, 0), ("collapse", 57, 1), ("maximize", 58, 0), ("minimize", 58, 1), ("zoom in", 59, 0),
    ("zoom out", 59, 1), ("speed up", 60, 0), ("slow down", 60, 1), ("upgrade", 61, 0), ("downgrade", 61, 1),
    ("love", 62, 0), ("hate", 62, 1), ("before", 20, 0), ("input", 63, 0), ("output", 63, 1),
    ("inbound", 64, 0), ("outbound", 64, 1), ("import", 65, 0), ("export", 65, 1), ("upload", 66, 0),
    ("download", 66, 1), ("encrypt", 67, 0), ("decrypt", 67, 1), ("encode", 68, 0), ("decode", 68, 1),
    ("asleep", 69, 0), ("awake", 69, 1), ("employer", 70, 0), ("employee", 70, 1), ("buyer", 71, 0),
    ("seller", 71, 1), ("landlord", 72, 0), ("tenant", 72, 1), ("sender", 73, 0), ("recipient", 73, 1),
    ("receiver", 73, 1), ("parent", 74, 0), ("child", 74, 1), ("teacher", 75, 0), ("student", 75, 1),
    ("doctor", 76, 0), ("patient", 76, 1), ("client", 77, 0), ("server", 77, 1), ("master", 78, 0),
    ("slave", 78, 1), ("replica", 78, 1), ("host", 79, 0), ("guest", 79, 1), ("plaintiff", 80, 0),
    ("defendant", 80, 1), ("lender", 81, 0), ("borrower", 81, 1), ("ascend", 19, 0), ("descend", 19, 1),
    ("yes", 82, 0), ("singular", 83, 0), ("plural", 83, 1),
    // Soft groups (from SOFT_GROUPS up): they block only when both questions use the group.
    ("from", 200, 0), ("to", 200, 1), ("into", 200, 1), ("onto", 200, 1), ("towards", 200, 1),
];

/// Groups numbered from here are soft: a word of one that only one question has changes nothing
/// ("how to reset" vs "how do I reset"), but both with other poles block ("to" vs "from").
pub const SOFT_GROUPS: u16 = 200;

/// English prefixes that flip or redirect a stem ("lock"/"unlock", "include"/"exclude",
/// "upload"/"download"): two differing words that are one stem under two of them are opposites.
#[rustfmt::skip]
pub const EN_FLIP_PREFIXES: &[&str] = &[
    "", "un", "in", "im", "il", "ir", "dis", "non", "de", "en", "ex", "anti", "up", "down", "out", "over",
    "under", "pre", "post", "mis", "re",
];
