//! The Unsplash search API: finds a photo for the `unsplashImage` tool and downloads it.

use forgeai_agent::ImageAttribution;
use serde::Deserialize;

/// The real Unsplash API; the `forgeai` binary's default `UNSPLASH_API_URL`.
pub const DEFAULT_UNSPLASH_API_URL: &str = "https://api.unsplash.com";

#[derive(Debug, thiserror::Error)]
pub enum UnsplashError {
    #[error(
        "no Unsplash access key is configured (set UNSPLASH_ACCESS_KEY); use a placeholder or CSS instead of a photo"
    )]
    NoAccessKey,
    #[error("Unsplash has no photo for {0:?}; try a broader query")]
    NoResults(String),
    #[error("Unsplash answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach Unsplash: {0}")]
    Http(String),
}

impl UnsplashError {
    /// Whether trying again later could help (rate limits, server errors, network trouble).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::Http(_) => true,
            Self::NoAccessKey | Self::NoResults(_) => false,
        }
    }
}

/// A photo found by a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub id: String,
    pub image_url: String,
    pub download_location: String,
    pub attribution: ImageAttribution,
}

#[derive(Deserialize)]
struct SearchResponse {
    results: Vec<ApiPhoto>,
}

#[derive(Deserialize)]
struct ApiPhoto {
    id: String,
    urls: ApiUrls,
    links: ApiLinks,
    user: ApiUser,
}

#[derive(Deserialize)]
struct ApiUrls {
    regular: String,
}

#[derive(Deserialize)]
struct ApiLinks {
    html: String,
    download_location: String,
}

#[derive(Deserialize)]
struct ApiUser {
    name: String,
    username: String,
}

#[derive(Clone)]
pub struct Unsplash {
    http: reqwest::Client,
    api_url: String,
    access_key: Option<String>,
}

impl Unsplash {
    /// A client of the API at `api_url` (e.g. [`DEFAULT_UNSPLASH_API_URL`]); without an access
    /// key (or with an empty one) every search fails with [`UnsplashError::NoAccessKey`]. The
    /// `forgeai` binary passes `UNSPLASH_API_URL` and `UNSPLASH_ACCESS_KEY`.
    pub fn new(api_url: impl Into<String>, access_key: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            access_key: access_key.filter(|key| !key.trim().is_empty()),
        }
    }

    /// Whether an access key is set; without one every search fails with [`UnsplashError::NoAccessKey`].
    pub fn is_configured(&self) -> bool {
        self.access_key.is_some()
    }

    fn key(&self) -> Result<&str, UnsplashError> {
        self.access_key.as_deref().ok_or(UnsplashError::NoAccessKey)
    }

    /// The best photo for `query` in `orientation` (landscape, portrait or squarish).
    pub async fn search(&self, query: &str, orientation: &str) -> Result<Photo, UnsplashError> {
        let key = self.key()?;
        let response = self
            .http
            .get(format!("{}/search/photos", self.api_url))
            .query(&[
                ("query", query),
                ("orientation", orientation),
                ("per_page", "1"),
                ("content_filter", "high"),
            ])
            .header("Authorization", format!("Client-ID {key}"))
            .header("Accept-Version", "v1")
            .send()
            .await
            .map_err(|error| UnsplashError::Http(error.to_string()))?;
        let found: SearchResponse = checked(response)
            .await?
            .json()
            .await
            .map_err(|error| UnsplashError::Api {
                status: 200,
                message: format!("unexpected search response: {error}"),
            })?;
        let photo = found
            .results
            .into_iter()
            .next()
            .ok_or_else(|| UnsplashError::NoResults(query.to_owned()))?;
        Ok(Photo {
            attribution: ImageAttribution {
                attribution_url: format!(
                    "https://unsplash.com/@{}?utm_source=forgeai&utm_medium=referral",
                    photo.user.username
                ),
                photographer_name: photo.user.name,
                photographer_username: photo.user.username,
                photo_url: photo.links.html,
            },
            id: photo.id,
            image_url: photo.urls.regular,
            download_location: photo.links.download_location,
        })
    }

    /// The photo's bytes. Tells Unsplash about the download first, as its API guidelines ask.
    pub async fn download(&self, photo: &Photo) -> Result<Vec<u8>, UnsplashError> {
        let key = self.key()?;
        let tracked = self
            .http
            .get(&photo.download_location)
            .header("Authorization", format!("Client-ID {key}"))
            .send()
            .await
            .map_err(|error| UnsplashError::Http(error.to_string()))?;
        checked(tracked).await?;
        let image = self
            .http
            .get(&photo.image_url)
            .send()
            .await
            .map_err(|error| UnsplashError::Http(error.to_string()))?;
        let bytes = checked(image)
            .await?
            .bytes()
            .await
            .map_err(|error| UnsplashError::Http(error.to_string()))?;
        Ok(bytes.to_vec())
    }
}

async fn checked(response: reqwest::Response) -> Result<reqwest::Response, UnsplashError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value["errors"].as_array().map(|errors| {
                errors
                    .iter()
                    .filter_map(|error| error.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .filter(|message| !message.is_empty())
        .unwrap_or(body);
    Err(UnsplashError::Api {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use forgeai_test_support::{MockUnsplash, TINY_JPEG};

    #[tokio::test]
    async fn finds_and_downloads_a_photo_with_its_attribution() {
        let mock = MockUnsplash::start("key-1").await;
        let unsplash = Unsplash::new(mock.url(), Some("key-1".into()));
        let photo = unsplash.search("mountain lake", "landscape").await.unwrap();
        assert_eq!(photo.attribution.photographer_username, "janedoe");
        assert!(
            photo
                .attribution
                .attribution_url
                .starts_with("https://unsplash.com/@janedoe?utm_source=")
        );
        assert_eq!(unsplash.download(&photo).await.unwrap(), TINY_JPEG);
        let requests = mock.requests();
        assert_eq!(
            requests[0].query.get("orientation").map(String::as_str),
            Some("landscape")
        );
        assert!(
            requests.iter().any(|request| request.path.ends_with("/download")),
            "download tracked"
        );
    }

    #[tokio::test]
    async fn explains_a_missing_key_a_wrong_key_and_no_results() {
        let mock = MockUnsplash::start("key-1").await;
        let without_key = Unsplash::new(mock.url(), None);
        assert!(matches!(
            without_key.search("x", "landscape").await,
            Err(UnsplashError::NoAccessKey)
        ));
        let wrong_key = Unsplash::new(mock.url(), Some("wrong".into()));
        let error = wrong_key.search("x", "landscape").await.unwrap_err();
        assert!(
            matches!(&error, UnsplashError::Api { status: 401, message } if message.contains("invalid")),
            "{error}"
        );
        let unsplash = Unsplash::new(mock.url(), Some("key-1".into()));
        assert!(matches!(
            unsplash.search("nothing", "portrait").await,
            Err(UnsplashError::NoResults(_))
        ));
    }
}
