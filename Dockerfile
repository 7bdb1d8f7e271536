# Static certmon in a distroless image (no shell, no libc, runs as nonroot).
#   docker build -t certmon .
#   docker run -p 8080:8080 -v certmon-data:/data certmon server --data /data
#   docker run certmon agent --server https://certmon.example.com ...
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/certmon ./cmd/certmon

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/certmon /usr/local/bin/certmon
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/certmon"]
CMD ["server", "--data", "/data"]
