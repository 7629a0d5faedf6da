use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use forgeai_code_agent::format_bytes;
use forgeai_engine::error_chain;
use serde::Serialize;

/// An API failure, answered as `{"error": "..."}` with a status that says whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid credentials: send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// The request cannot be served in the resource's current state (e.g. nothing to export yet).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadGateway(String),
    /// A service forgeai needs (the engine) cannot take the request now; nothing was stored.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words a person can act on.
    pub error: String,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = match &self {
            // Database and engine details stay in the server's log, not in answers to clients.
            Self::Internal(_) => {
                let incident = uuid::Uuid::new_v4();
                tracing::error!(error = %self, %incident, "request failed");
                format!("internal error {incident}; the server log has the details")
            }
            other => {
                if status.is_server_error() {
                    tracing::error!(error = %other, "request failed");
                }
                other.to_string()
            }
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

impl From<forgeai_store::Error> for ApiError {
    fn from(error: forgeai_store::Error) -> Self {
        match error {
            forgeai_store::Error::Invalid { .. } | forgeai_store::Error::Rejected(_) => {
                Self::BadRequest(error.to_string())
            }
            forgeai_store::Error::FragmentTooLarge { size, limit } => Self::TooLarge(format!(
                "with this change the fragment's files would have {}, more than the {} a fragment may have; \
                 nothing was saved",
                format_bytes(size),
                format_bytes(limit)
            )),
            other => Self::Internal(error_chain(&other)),
        }
    }
}

impl From<forgeai_code_agent::SubmitError> for ApiError {
    fn from(error: forgeai_code_agent::SubmitError) -> Self {
        match error {
            forgeai_code_agent::SubmitError::NoProject(_) => Self::NotFound("project"),
            forgeai_code_agent::SubmitError::Store(error) => error.into(),
            forgeai_code_agent::SubmitError::Start(error) => {
                Self::Unavailable(format!("{error}; the prompt was not kept, send it again later"))
            }
        }
    }
}

impl From<forgeai_code_agent::RunsError> for ApiError {
    fn from(error: forgeai_code_agent::RunsError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<forgeai_engine::Error> for ApiError {
    fn from(error: forgeai_engine::Error) -> Self {
        Self::Internal(error_chain(&error))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge(format!("request body is too large: {}", rejection.body_text()))
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".into())
            }
            _ => Self::BadRequest(format!("invalid JSON body: {}", rejection.body_text())),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(format!("invalid query: {}", rejection.body_text()))
    }
}
