//! `POST /api/uploads`: images to build from, checked by content, served back under `/uploads/`.

use axum::Json;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::ApiPath;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};

pub const MAX_UPLOAD_BYTES: usize = 4 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct UploadResponse {
    /// Where the image is served; use it as `imageUrl`.
    pub url: String,
}

#[derive(ToSchema)]
#[allow(dead_code)] // Describes the multipart body for the OpenAPI document only.
pub struct UploadForm {
    /// A PNG, JPEG, WebP or GIF image of at most 4 MB.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
}

/// The image kind of `bytes`, judged by their signature rather than by what the client says.
fn sniff_image(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("png", "image/png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("jpg", "image/jpeg"))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(("gif", "image/gif"))
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("webp", "image/webp"))
    } else {
        None
    }
}

fn content_type_for(extension: &str) -> Option<&'static str> {
    match extension {
        "png" => Some("image/png"),
        "jpg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Stores an uploaded image (multipart field `file`) and answers its URL.
#[utoipa::path(post, path = "/api/uploads", tag = "uploads",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    _caller: CurrentUser,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        let declared_multipart = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if declared_multipart {
            ApiError::BadRequest(format!("malformed multipart body: {}", rejection.body_text()))
        } else {
            ApiError::UnsupportedMediaType("send the image as multipart/form-data with a `file` field".into())
        }
    })?;
    let mut image = None;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        if field.name() == Some("file") {
            image = Some(field.bytes().await.map_err(multipart_error)?);
            break;
        }
    }
    let image = image.ok_or_else(|| ApiError::BadRequest("the form has no `file` field".into()))?;
    let name = save_image(&state.config.data_dir, &image).await?;
    let url = format!("{}/uploads/{name}", state.base_url(&headers));
    Ok((StatusCode::CREATED, Json(UploadResponse { url })))
}

/// Checks that `image` is a PNG, JPEG, WebP or GIF of at most 4 MB and stores it under
/// `<data_dir>/uploads/`; answers its file name, served at `/uploads/<name>`.
pub async fn save_image(data_dir: &std::path::Path, image: &[u8]) -> Result<String, ApiError> {
    if image.len() > MAX_UPLOAD_BYTES {
        return Err(ApiError::TooLarge("images may be at most 4 MB".into()));
    }
    let (extension, _) = sniff_image(image)
        .ok_or_else(|| ApiError::UnsupportedMediaType("the file is not a PNG, JPEG, WebP or GIF image".into()))?;
    let name = format!("{}.{extension}", uuid::Uuid::now_v7());
    let dir = data_dir.join("uploads");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|error| ApiError::Internal(format!("cannot create {}: {error}", dir.display())))?;
    tokio::fs::write(dir.join(&name), image)
        .await
        .map_err(|error| ApiError::Internal(format!("cannot store the upload: {error}")))?;
    Ok(name)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("images may be at most 4 MB".into())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", error.body_text()))
    }
}

/// `GET /uploads/{name}`: a stored upload. Names are random, so knowing one is the permission.
pub async fn serve(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let (stem, extension) = name.split_once('.').ok_or(ApiError::NotFound("upload"))?;
    let content_type = content_type_for(extension).ok_or(ApiError::NotFound("upload"))?;
    uuid::Uuid::parse_str(stem).map_err(|_| ApiError::NotFound("upload"))?;
    let bytes = tokio::fs::read(state.config.data_dir.join("uploads").join(&name))
        .await
        .map_err(|_| ApiError::NotFound("upload"))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_signature() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest").map(|kind| kind.0), Some("png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]).map(|kind| kind.0), Some("jpg"));
        assert_eq!(sniff_image(b"GIF89a...").map(|kind| kind.0), Some("gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 ").map(|kind| kind.0), Some("webp"));
        assert_eq!(sniff_image(b"<svg xmlns=...>"), None);
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVE"), None);
    }
}
