//! `POST /api/uploads` and `GET /uploads/{name}`.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{TestServer, expect_error, read_json};

const BOUNDARY: &str = "forgeai-test-boundary";

fn png(size: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(size.max(bytes.len()), 0x42);
    bytes
}

/// A multipart/form-data body with one part per `(field, filename, content type, bytes)`.
fn form(parts: &[(&str, &str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, filename, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(s: &TestServer, token: &str, body: Vec<u8>) -> reqwest::Response {
    s.request(Method::POST, "/api/uploads", Some(token))
        .header(CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .expect("upload sent")
}

pub async fn uploads(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();

    let images: [(&str, Vec<u8>); 4] = [
        ("png", png(1000)),
        ("jpg", [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3].to_vec()),
        ("gif", b"GIF89a\x01\x00\x01\x00".to_vec()),
        ("webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ....".to_vec()),
    ];
    let mut urls = Vec::new();
    for (extension, bytes) in &images {
        // The client's file name and content type do not matter; the bytes do.
        let response = upload(
            s,
            token,
            form(&[("file", "shot.bin", "application/octet-stream", bytes)]),
        )
        .await;
        let (status, body) = read_json(response).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let url = body["url"].as_str().expect("url").to_owned();
        let prefix = format!("{}/uploads/", s.url);
        assert!(
            url.starts_with(&prefix) && url.ends_with(&format!(".{extension}")),
            "{url}"
        );
        let served = s.http.get(&url).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        let content_type = served.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("image/"), "{content_type}");
        assert!(served.headers().contains_key(CACHE_CONTROL));
        assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
        urls.push(url);
    }
    // Other fields before the file are skipped; exactly 4 MB is allowed.
    let max = png(4 * 1024 * 1024);
    let response = upload(
        s,
        token,
        form(&[
            ("note", "n.txt", "text/plain", b"hello"),
            ("file", "big.png", "image/png", &max),
        ]),
    )
    .await;
    let (status, body) = read_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An uploaded image can be built from.
    let (status, project) = s
        .call(
            Method::POST,
            "/api/projects",
            Some(token),
            Some(json!({ "message": "Like this", "imageUrl": urls[0] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    s.finished_runs(token, project["id"].as_str().unwrap(), 1).await;

    let before = s.stored().await;
    let rejected: Vec<(Vec<u8>, StatusCode)> = vec![
        (
            form(&[("file", "a.png", "image/png", b"not really a png")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            form(&[(
                "file",
                "a.svg",
                "image/svg+xml",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            )]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            form(&[("file", "a.png", "image/png", b"")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            form(&[("file", "big.png", "image/png", &png(4 * 1024 * 1024 + 1))]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            form(&[("file", "huge.png", "image/png", &png(6 * 1024 * 1024))]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            form(&[("image", "a.png", "image/png", &png(100))]),
            StatusCode::BAD_REQUEST,
        ),
        (form(&[]), StatusCode::BAD_REQUEST),
        (b"this is not multipart at all".to_vec(), StatusCode::BAD_REQUEST),
        (
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nPNG-without-end")
                .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in rejected {
        let response = upload(s, token, body).await;
        expect_error(response, status).await;
    }
    for content_type in [
        None,
        Some("application/json"),
        Some("image/png"),
        Some("multipart/form-data"),
    ] {
        let mut request = s.request(Method::POST, "/api/uploads", Some(token)).body(png(100));
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let expected = match content_type {
            // Multipart without its boundary is a malformed multipart request.
            Some("multipart/form-data") => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        expect_error(request.send().await.unwrap(), expected).await;
    }
    assert_eq!(s.stored().await, before, "a rejected upload was kept");

    let stored_name = urls[0].rsplit('/').next().unwrap().to_owned();
    let stem = stored_name.split('.').next().unwrap();
    for name in [
        "0190a5b1-0000-7000-8000-000000000000.png".to_owned(),
        format!("{stem}.jpg"),
        format!("{stem}.svg"),
        stem.to_owned(),
        "not-a-uuid.png".to_owned(),
        "..%2Fforgeai.db".to_owned(),
        "%2E%2E%2Fforgeai.db".to_owned(),
        "forgeai.db".to_owned(),
    ] {
        let response = s
            .request(Method::GET, &format!("/uploads/{name}"), None)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND).await;
    }
}
