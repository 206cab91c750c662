//! Person names from a gazetteer (no model: none can be downloaded where jobs run): a title
//! (`Dr.`, `Mrs`) followed by a capitalised name, or a common given name followed by a
//! capitalised surname (`Priya Raman`, `Seán O'Brien`).
//!
//! Given names that are also ordinary words or places (`May`, `Grace`, `Jordan`, `Georgia`,
//! `Victoria`) are left out of the list on purpose, and a "surname" that names a place or an
//! organisation (`River`, `University`, `Street`) rejects the match, so recall is traded for
//! precision. Names alone (`Priya`), surname-first forms and names outside the list are missed.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Titles that make the next capitalised word(s) a person's name.
pub const TITLES: &[&str] = &[
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Mx",
    "Dr",
    "Prof",
    "Professor",
    "Sir",
    "Dame",
    "Madam",
    "Madame",
    "Mme",
    "Mlle",
    "Herr",
    "Frau",
    "Señor",
    "Señora",
    "Sr",
    "Sra",
];

/// Given names common in English-language text and across large immigrant communities,
/// without the ones that are also common words or places.
const GIVEN_NAMES: &str = "\
    Aaron Abdul Abigail Adam Adrian Ahmed Aisha Alan Albert Alejandro Alex Alexander \
    Alexandra Alice Alicia Alison Amanda Amelia Amir Amit Amy Ana Andrea Andrew Angela Anita \
    Ann Anna Anne Anthony Antonio Arjun Arthur Ashley Barbara Beatriz Benjamin Beth Betty \
    Brandon Brenda Brian Bruce Camila Carla Carlos Carmen Carol Caroline Catherine Charles \
    Charlotte Chen Chloe Christina Christine Christopher Claire Claudia Connor Craig Cynthia \
    Daniel Daniela David Deborah Deepak Denise Dennis Diana Diego Dmitri Donald Donna \
    Dorothy Douglas Edward Elena Eleanor Elizabeth Ellen Emily Emma Eric Erik Ethan Eugene \
    Evelyn Fatima Felipe Fernando Fiona Francesca Francisco Frank Gabriel Gabriela Gary \
    George Gerald Gloria Gregory Hannah Harold Harry Hassan Heather Helen Henry Hiroshi Hugo \
    Ian Ibrahim Igor Ingrid Isabel Isabella Ivan Jacob Jacqueline James Jamal Jane Janet \
    Janice Jason Javier Jean Jeffrey Jennifer Jeremy Jessica Joan Joanna John Jonathan Jorge \
    José Jose Joseph Joshua Juan Judith Julia Julian Julie Justin Karen Katherine Kathleen \
    Kayla Keith Kenji Kenneth Kevin Kimberly Kyle Larry Laura Lauren Lawrence Leila Linda \
    Lisa Lucas Lucia Luis Lukas Margaret Maria María Marie Marco Marcus Marek Margarita \
    Marilyn Martha Martin Mary Matthew Mei Megan Melissa Mercedes Michael Michelle Miguel \
    Mohammed Muhammad Nancy Natalia Natalie Nathan Nicholas Nicole Nikolai Noah Nora Olga \
    Olivia Omar Oscar Pablo Pamela Patricia Patrick Paul Pedro Peter Pierre Priya Rachel \
    Rahul Rajesh Ravi Rebecca Richard Robert Roberto Roger Ronald Rosa Ryan Samantha Samuel \
    Sandra Sara Sarah Sean Seán Sergei Sharon Siddharth Sofia Sophie Stephanie Stephen \
    Steven Susan Takeshi Tanya Teresa Thomas Timothy Tomás Tyler Valentina Vanessa Victor \
    Vikram Vincent Walter Wei William Xavier Yuki Yusuf Zachary Zhang Zoe Zoë
";

/// Capitalised words that, after a given name, show it is not a person (`Charles River`,
/// `Kevin Street`) or that a sentence merely starts with a capital.
const NOT_SURNAMES: &str = "\
    Academy Airport Ave Avenue Bay Beach Boulevard Bridge Building Center Centre Church City \
    College Company Corp Corporation County Court Day Drive Foundation Fund Gallery Hall \
    Harbour Harbor Highway Hill Hospital Hotel Inc Institute Island Lake Lane Ltd Memorial \
    Mountain Museum Park Place Prize Project Road River School Square Station Street Stadium \
    Trust University Valley Way The And But Or Of In On At To For With From By As I It He \
    She We They You This That Monday Tuesday Wednesday Thursday Friday Saturday Sunday \
    January February March April May June July August September October November December
";

fn listed(list: &'static str, cell: &'static OnceLock<HashSet<&'static str>>, w: &str) -> bool {
    cell.get_or_init(|| list.split_whitespace().collect())
        .contains(w)
}

/// Whether `first` is a listed given name (case as written: `john` in lower case is not).
pub fn given_name(first: &str) -> bool {
    static SET: OnceLock<HashSet<&str>> = OnceLock::new();
    listed(GIVEN_NAMES, &SET, first)
}

fn not_surname(word: &str) -> bool {
    static SET: OnceLock<HashSet<&str>> = OnceLock::new();
    listed(NOT_SURNAMES, &SET, word)
}

/// Whether `word` names a place or an organisation when it follows a name (`Museum`).
pub fn organisation_word(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase) && not_surname(word)
}

/// Whether `word` may be a surname: capitalised and not a place/organisation word.
pub fn surname(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
        && word.chars().count() >= 2
        && !not_surname(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gazetteer_and_stop_words() {
        assert!(given_name("Priya") && given_name("Seán"));
        assert!(!given_name("May") && !given_name("priya"));
        assert!(surname("O'Brien") && surname("Nguyen"));
        assert!(!surname("River") && !surname("street") && !surname("X"));
    }
}
