//! Phone numbers and recipients as clients write them, turned into the
//! digits and JIDs WhatsApp addresses.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("no phone number given; use international format, e.g. +15551234567")]
    Empty,
    #[error(
        "{0:?} is not allowed in a phone number; use digits with an optional leading +, spaces, dashes, dots or parentheses"
    )]
    InvalidCharacter(char),
    #[error(
        "starts with 0; use international format with the country code and no trunk prefix, e.g. +15551234567"
    )]
    LeadingZero,
    #[error("has {0} digits; a phone number in international format has 7 to 15")]
    Length(usize),
}

/// The digits of a phone number in international format: `"+1 555-123-4567"`
/// → `"15551234567"`. Accepts `+` at the start and spaces, dashes, dots and
/// parentheses as separators; requires 7 to 15 digits (E.164) not starting with 0.
pub fn normalize_phone(input: &str) -> Result<String, PhoneError> {
    let trimmed = input.trim();
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            other => return Err(PhoneError::InvalidCharacter(other)),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    if digits.starts_with('0') {
        return Err(PhoneError::LeadingZero);
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(PhoneError::Length(digits.len()));
    }
    Ok(digits)
}

/// WhatsApp's server for user JIDs.
pub const USER_SERVER: &str = "s.whatsapp.net";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error(
        "unsupported JID server {0:?}; use a phone number or a JID ending in @s.whatsapp.net, @g.us or @lid"
    )]
    Server(String),
    #[error("the part before @ must be digits (with '-' for old group ids)")]
    User,
}

/// Turns a `send` recipient into a JID: a phone number becomes
/// `DIGITS@s.whatsapp.net`; a JID on `s.whatsapp.net`, `g.us` or `lid` is
/// kept (device suffixes are refused: messages go to a user, not a device).
pub fn recipient_jid(to: &str) -> Result<String, RecipientError> {
    let to = to.trim();
    let Some((user, server)) = to.split_once('@') else {
        return Ok(format!("{}@{USER_SERVER}", normalize_phone(to)?));
    };
    let user_ok = match server {
        USER_SERVER | "lid" => !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()),
        "g.us" => {
            !user.is_empty()
                && user.chars().all(|c| c.is_ascii_digit() || c == '-')
                && !user.starts_with('-')
                && !user.ends_with('-')
        }
        other => return Err(RecipientError::Server(other.to_owned())),
    };
    if !user_ok {
        return Err(RecipientError::User);
    }
    Ok(to.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_normalization() {
        assert_eq!(normalize_phone("+1 555-123-4567").unwrap(), "15551234567");
        assert_eq!(normalize_phone("(49) 30.1234567").unwrap(), "49301234567");
        assert_eq!(normalize_phone(" 4915112345678 ").unwrap(), "4915112345678");
        assert_eq!(normalize_phone("1234567").unwrap(), "1234567");
        assert_eq!(
            normalize_phone("123456789012345").unwrap(),
            "123456789012345"
        );
        assert_eq!(normalize_phone(""), Err(PhoneError::Empty));
        assert_eq!(normalize_phone("+"), Err(PhoneError::Empty));
        assert_eq!(
            normalize_phone("+1 555 12a"),
            Err(PhoneError::InvalidCharacter('a'))
        );
        assert_eq!(
            normalize_phone("++15551234567"),
            Err(PhoneError::InvalidCharacter('+'))
        );
        assert_eq!(
            normalize_phone("0151 1234567"),
            Err(PhoneError::LeadingZero)
        );
        assert_eq!(normalize_phone("123456"), Err(PhoneError::Length(6)));
        assert_eq!(
            normalize_phone("1234567890123456"),
            Err(PhoneError::Length(16))
        );
        assert!(PhoneError::Length(6).to_string().contains("7 to 15"));
    }

    #[test]
    fn recipients_become_jids() {
        assert_eq!(
            recipient_jid("+1 555 123 4567").unwrap(),
            "15551234567@s.whatsapp.net"
        );
        assert_eq!(
            recipient_jid("15551234567@s.whatsapp.net").unwrap(),
            "15551234567@s.whatsapp.net"
        );
        assert_eq!(
            recipient_jid("120363012345678901@g.us").unwrap(),
            "120363012345678901@g.us"
        );
        assert_eq!(
            recipient_jid("15551234567-1600000000@g.us").unwrap(),
            "15551234567-1600000000@g.us"
        );
        assert_eq!(recipient_jid("123456789@lid").unwrap(), "123456789@lid");
        assert!(matches!(
            recipient_jid("1@example.com"),
            Err(RecipientError::Server(_))
        ));
        assert_eq!(
            recipient_jid("1555:2@s.whatsapp.net"),
            Err(RecipientError::User)
        );
        assert_eq!(recipient_jid("@s.whatsapp.net"), Err(RecipientError::User));
        assert!(matches!(
            recipient_jid("12"),
            Err(RecipientError::Phone(PhoneError::Length(2)))
        ));
    }
}
