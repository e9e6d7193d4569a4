//! QR codes in the terminal.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// `payload` as a QR code in Unicode half blocks, two modules per character
/// cell vertically. Dark modules are drawn as background and light ones as
/// foreground, so on the usual light-on-dark terminal the code appears dark
/// on light, the way phone cameras read best; the quiet zone is kept.
pub fn render(payload: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::new(payload.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_square_of_half_blocks() {
        let text = render("2@abcdefghijklmnop,QUJDREVGR0hJSktMTU5PUA==,cXJzdHV2d3h5eg==,MTIzNDU2")
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        assert!(
            width >= 21 + 8,
            "at least version 1 plus quiet zone: {width}"
        );
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Two module rows per text line.
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(
            text.chars()
                .all(|c| matches!(c, ' ' | '▀' | '▄' | '█' | '\n'))
        );
    }
}
