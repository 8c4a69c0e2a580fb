//! Text measures for captions: normalization, word error rate, shared words.

/// Lower-case words, punctuation removed (Unicode-aware: Cyrillic, Kazakh letters).
pub fn words(text: &str) -> Vec<String> {
    text.chars()
        .map(|c| if c.is_alphanumeric() { c.to_lowercase().collect::<String>() } else { " ".to_string() })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Word error rate of `hypothesis` against `reference`: word-level edit distance divided by
/// the number of reference words.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}

/// Share of the reference's words that appear in the hypothesis (each counted once).
pub fn shared_words(reference: &str, hypothesis: &str) -> f64 {
    let r = words(reference);
    let mut h = words(hypothesis);
    if r.is_empty() {
        return 0.0;
    }
    let found = r
        .iter()
        .filter(|w| match h.iter().position(|x| x == *w) {
            Some(i) => {
                h.swap_remove(i);
                true
            }
            None => false,
        })
        .count();
    found as f64 / r.len() as f64
}

/// Whether most letters are Cyrillic.
pub fn mostly_cyrillic(text: &str) -> bool {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    !letters.is_empty() && letters.iter().filter(|c| ('\u{0400}'..='\u{04FF}').contains(*c)).count() * 2 > letters.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures() {
        assert_eq!(words("And so, my fellow Americans!"), ["and", "so", "my", "fellow", "americans"]);
        assert_eq!(words("Құрметті СОТ."), ["құрметті", "сот"]);
        assert_eq!(wer("a b c d", "a b c d"), 0.0);
        assert_eq!(wer("a b c d", "a x c"), 0.5);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(shared_words("суд идёт суд", "Суд идёт"), 2.0 / 3.0);
        assert!(mostly_cyrillic("Құрметті сот, hello"));
        assert!(!mostly_cyrillic("hello сот"));
    }
}
