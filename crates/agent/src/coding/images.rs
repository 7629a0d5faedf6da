//! The `unsplashImage` tool and the trait its image service implements.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::activity::CallReport;
use crate::error::ToolError;
use crate::tool::{Tool, ToolContext};

// The variants have `//` comments, not doc comments, so that the schema is a
// plain `enum` list rather than `oneOf` with `const`s (see `schema.rs`).

/// Shape of the photo wanted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageOrientation {
    // Wider than tall.
    #[default]
    Landscape,
    // Taller than wide.
    Portrait,
    // About square.
    Squarish,
}

/// Where the photo will be used (lets the service pick a suitable size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImagePurpose {
    // A large banner at the top of a page.
    Hero,
    // Illustrates a feature or section.
    Feature,
    // A person's portrait next to a quote.
    Testimonial,
    // A full-bleed background.
    Background,
    // A card in a list or grid (product, property, post…).
    Listing,
    // Anything else.
    #[default]
    Generic,
}

/// Arguments of `unsplashImage`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsplashImageArgs {
    /// What the photo should show, in a few English words (at least 2 characters).
    #[schemars(length(min = 2))]
    pub query: String,
    /// The photo's orientation.
    #[serde(default)]
    pub orientation: ImageOrientation,
    /// Where the photo is used.
    #[serde(default)]
    pub purpose: ImagePurpose,
    /// A short name for the saved file, e.g. `hero-coffee`.
    #[serde(default)]
    pub filename_hint: String,
}

/// Credit for a photo, to be shown next to it as Unsplash requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageAttribution {
    /// The photographer's name.
    pub photographer_name: String,
    /// The photographer's Unsplash username.
    pub photographer_username: String,
    /// The photo's page on Unsplash.
    pub photo_url: String,
    /// The link to put on the credit (the photo page with referral parameters).
    pub attribution_url: String,
}

/// A photo saved in the project: what `unsplashImage` returns to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedImage {
    /// The URL path the app uses, e.g. `/assets/unsplash/hero-coffee.jpg`.
    pub public_path: String,
    /// The file in the project, e.g. `public/assets/unsplash/hero-coffee.jpg`.
    pub local_file: String,
    /// The credit to show.
    pub attribution: ImageAttribution,
}

/// Why no photo could be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The search found nothing.
    #[error("no photo found for `{query}`; try a broader query")]
    NoResult {
        /// The query searched for.
        query: String,
    },
    /// The service refused or the download failed; told to the model.
    #[error("{0}")]
    Failed(String),
    /// The service or the sandbox could not be reached; the step is retried.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ImageError> for ToolError {
    fn from(error: ImageError) -> Self {
        match error {
            ImageError::Unavailable(message) => ToolError::Unavailable(message),
            other => ToolError::Failed(other.to_string()),
        }
    }
}

/// Finds a photo and saves it into the project under
/// `public/assets/unsplash/`: the Unsplash client (with the sandbox to write
/// into) implements this.
#[async_trait]
pub trait ImageProvider: Send + Sync {
    /// Searches for `request.query` and saves the best photo, named after
    /// `request.filename_hint` where possible.
    async fn save_image(&self, request: &UnsplashImageArgs) -> Result<SavedImage, ImageError>;
}

/// The [`ImageProvider`] used when no Unsplash key is configured: every call
/// tells the model that images are unavailable, so it builds without them.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnconfiguredImages;

#[async_trait]
impl ImageProvider for UnconfiguredImages {
    async fn save_image(&self, _request: &UnsplashImageArgs) -> Result<SavedImage, ImageError> {
        Err(ImageError::Failed(
            "image search is not configured on this server (no UNSPLASH_ACCESS_KEY); \
                 build the page without photos, e.g. with gradients or icons"
                .into(),
        ))
    }
}

/// `unsplashImage`: saves a photo into the project and returns where it is
/// and whom to credit.
#[derive(Clone)]
pub struct UnsplashImageTool {
    provider: Arc<dyn ImageProvider>,
}

impl UnsplashImageTool {
    /// The tool, fetching photos through `provider`.
    pub fn new(provider: Arc<dyn ImageProvider>) -> Self {
        Self { provider }
    }
}

#[async_trait]
impl Tool for UnsplashImageTool {
    type Args = UnsplashImageArgs;

    fn name(&self) -> &str {
        "unsplashImage"
    }

    fn description(&self) -> &str {
        "Search Unsplash and save a photo into public/assets/unsplash/. Returns {publicPath, localFile, attribution{photographerName, photographerUsername, photoUrl, attributionUrl}}; use publicPath as the image src and show the credit."
    }

    fn status(&self, _args: &UnsplashImageArgs) -> Option<String> {
        Some("Downloading images...".into())
    }

    fn activity(&self, args: &UnsplashImageArgs, report: &CallReport<'_>) -> String {
        let query = super::tools::short(args.query.trim(), 60);
        if report.is_error {
            format!("Found no Unsplash photo for “{query}”")
        } else {
            format!("Fetched an Unsplash photo of “{query}”")
        }
    }

    async fn call(&self, mut args: UnsplashImageArgs, _ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        args.query = args.query.trim().to_owned();
        if args.query.chars().count() < 2 {
            return Err(ToolError::InvalidArguments(
                "`query` must have at least 2 characters".into(),
            ));
        }
        let saved = self.provider.save_image(&args).await?;
        serde_json::to_string(&saved)
            .map_err(|error| ToolError::Failed(format!("could not encode the saved image: {error}")))
    }
}
