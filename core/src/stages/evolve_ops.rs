//! Evol-Instruct operators (WizardLM) and the elimination check for failed evolutions.
//!
//! The prompts follow WizardLM's in-depth / in-breadth evolving prompts in spirit: a "prompt
//! rewriter" is told one method to make the instruction harder, or a "prompt creator" to write
//! a new, rarer instruction of the same domain. The operator of each round is drawn per row
//! from the job seed, the row index and the round, so the same job evolves the same way.

use sha2::{Digest, Sha256};

use super::textutil::{find_phrase, normalized_words, word_count, REFUSAL_PHRASES};

/// Every operator, in the order `operators` lists refer to them.
pub const OPERATORS: &[&str] = &[
    "add_constraints",
    "deepen",
    "concretize",
    "increase_reasoning",
    "complicate_input",
    "in_breadth",
];

const DEPTH_HEAD: &str = "I want you to act as a Prompt Rewriter.\n\
Your objective is to rewrite a given prompt into a more complex version to make famous AI \
systems (e.g. ChatGPT and GPT-4) a bit harder to handle.\n\
But the rewritten prompt must be reasonable and must be understood and responded to by humans.\n\
Your rewriting cannot omit the non-text parts such as tables and code in #The Given Prompt#. \
Also, do not omit the input in #The Given Prompt#.\n\
You SHOULD complicate the given prompt using the following method:\n";

const DEPTH_TAIL: &str = "\nYou should try your best not to make #Rewritten Prompt# verbose: \
#Rewritten Prompt# can only add 10 to 20 words to #The Given Prompt#.\n\
'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not \
allowed to appear in #Rewritten Prompt#.\n";

const BREADTH_HEAD: &str = "I want you to act as a Prompt Creator.\n\
Your goal is to draw inspiration from #Given Prompt# to create a brand new prompt.\n\
This new prompt should belong to the same domain as #Given Prompt# but be even rarer.\n\
The length and complexity of #Created Prompt# should be similar to those of #Given Prompt#.\n\
#Created Prompt# must be reasonable and must be understood and responded to by humans.\n\
'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to \
appear in #Created Prompt#.\n";

/// The method sentence of an in-depth operator.
fn method(op: &str) -> &'static str {
    match op {
        "add_constraints" => "Please add one more constraint or requirement to #The Given Prompt#.",
        "deepen" => {
            "If #The Given Prompt# contains inquiries about certain issues, increase the depth \
             and breadth of the inquiry."
        }
        "concretize" => "Please replace general concepts with more specific concepts.",
        "increase_reasoning" => {
            "If #The Given Prompt# can be solved with just a few simple thinking processes, \
             rewrite it to explicitly request multiple-step reasoning."
        }
        _ => {
            "Please add complex input data to #The Given Prompt# in the form of a table, code, \
             JSON or a formula, and make the prompt refer to it."
        }
    }
}

/// The evolving prompt that applies `op` to `instruction`.
pub fn prompt(op: &str, instruction: &str) -> String {
    if op == "in_breadth" {
        format!("{BREADTH_HEAD}\n#Given Prompt#:\n{instruction}\n\n#Created Prompt#:\n")
    } else {
        format!(
            "{DEPTH_HEAD}{}\n{DEPTH_TAIL}\n#The Given Prompt#:\n{instruction}\n\n#Rewritten Prompt#:\n",
            method(op)
        )
    }
}

/// The operator for a row's round, drawn deterministically from `allowed`.
pub fn choose(allowed: &[String], job_seed: u64, row: u64, round: u32) -> &str {
    let mut h = Sha256::new();
    h.update(b"evolve");
    h.update(job_seed.to_le_bytes());
    h.update(row.to_le_bytes());
    h.update(round.to_le_bytes());
    let d = h.finalize();
    let n = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    &allowed[(n % allowed.len() as u64) as usize]
}

/// Words of the evolving prompts that must not leak into an evolved instruction.
const PROMPT_WORDS: &[&str] = &[
    "#the given prompt#",
    "#given prompt#",
    "#rewritten prompt#",
    "#created prompt#",
    "given prompt",
    "rewritten prompt",
    "created prompt",
    "prompt rewriter",
    "prompt creator",
];

/// Strips a leading label a model may echo ("#Rewritten Prompt#:") and surrounding space.
pub fn clean(reply: &str) -> String {
    let mut t = reply.trim();
    for label in [
        "#Rewritten Prompt#:",
        "#Created Prompt#:",
        "Rewritten Prompt:",
    ] {
        if let Some(rest) = t.strip_prefix(label) {
            t = rest.trim();
        }
    }
    t.to_string()
}

/// Why an evolution failed, or `None` when it is a usable new instruction. WizardLM's
/// elimination rules: no information gain over the previous instruction, words copied from the
/// evolving prompt, a refusal instead of an instruction, or too short to be one.
pub fn eliminated(previous: &str, evolved: &str, min_words: usize) -> Option<String> {
    if word_count(evolved) < min_words {
        return Some(format!(
            "too short ({} words, min {min_words})",
            word_count(evolved)
        ));
    }
    if let Some(p) = find_phrase(evolved, PROMPT_WORDS) {
        return Some(format!("copies the evolving prompt's words ({p:?})"));
    }
    if let Some(p) = find_phrase(evolved, REFUSAL_PHRASES) {
        return Some(format!("refusal ({p:?})"));
    }
    let before: std::collections::HashSet<String> =
        normalized_words(previous).into_iter().collect();
    let after = normalized_words(evolved);
    let new_words = after.iter().filter(|w| !before.contains(*w)).count();
    if after.is_empty() || new_words < 2 {
        return Some("no new information over the previous instruction".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_deterministic_and_all_used() {
        let all: Vec<String> = OPERATORS.iter().map(|s| s.to_string()).collect();
        assert_eq!(choose(&all, 7, 3, 1), choose(&all, 7, 3, 1));
        let mut seen = std::collections::HashSet::new();
        for row in 0..300 {
            seen.insert(choose(&all, 7, row, 1));
        }
        assert_eq!(seen.len(), OPERATORS.len());
        let differs = (0..50).any(|r| choose(&all, 7, r, 1) != choose(&all, 7, r, 2));
        assert!(differs, "rounds draw independently");
    }

    #[test]
    fn prompts_carry_instruction_and_method() {
        let p = prompt("concretize", "Explain tides.");
        assert!(p.contains("Explain tides.") && p.contains("more specific concepts"));
        assert!(prompt("in_breadth", "Explain tides.").contains("#Created Prompt#"));
    }

    #[test]
    fn elimination_rules() {
        let prev = "Explain how tides work.";
        assert!(
            eliminated(prev, "Explain how tides work!", 3).is_some(),
            "no new info"
        );
        assert!(eliminated(prev, "Sure.", 3).unwrap().contains("too short"));
        assert!(eliminated(
            prev,
            "I'm sorry, as an AI I cannot rewrite this prompt for you",
            3
        )
        .unwrap()
        .contains("refusal"));
        assert!(eliminated(
            prev,
            "#Rewritten Prompt# Explain tides on Mars with data",
            3
        )
        .unwrap()
        .contains("copies"));
        assert_eq!(
            eliminated(
                prev,
                "Explain how tides work, and compute the tidal range for a bay given its depth.",
                3
            ),
            None
        );
        assert_eq!(clean("#Rewritten Prompt#:  Do X"), "Do X");
    }
}
