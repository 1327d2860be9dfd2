package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keyledger/keyledger/client"
)

// Project and Task are Runway's resources; each belongs to the
// organization of the key that created it, and only that organization's
// keys see it.
type Project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedBy string    `json:"created_by"` // the API key's id
	CreatedAt time.Time `json:"created_at"`
}

type Task struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	ProjectID string    `json:"project_id,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

type store struct {
	mu       sync.Mutex
	projects map[string][]Project // by organization
	tasks    map[string][]Task
}

func newApp(mw *client.Middleware) http.Handler {
	s := &store{projects: map[string][]Project{}, tasks: map[string][]Task{}}
	mux := http.NewServeMux()
	mux.Handle("GET /api/projects", mw.Protect("projects:read", http.HandlerFunc(s.listProjects)))
	mux.Handle("POST /api/projects", mw.Protect("projects:write", http.HandlerFunc(s.createProject)))
	mux.Handle("GET /api/tasks", mw.Protect("tasks:read", http.HandlerFunc(s.listTasks)))
	mux.Handle("POST /api/tasks", mw.Protect("tasks:write", http.HandlerFunc(s.createTask)))
	return mux
}

func (s *store) listProjects(w http.ResponseWriter, r *http.Request) {
	k, _ := client.KeyFromContext(r.Context())
	s.mu.Lock()
	out := append([]Project{}, s.projects[k.OrganizationID]...)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (s *store) createProject(w http.ResponseWriter, r *http.Request) {
	k, _ := client.KeyFromContext(r.Context())
	var in struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Name = strings.TrimSpace(in.Name); in.Name == "" || len(in.Name) > 200 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "invalid_name", "message": "name is 1 to 200 characters"})
		return
	}
	p := Project{ID: newID("proj_"), Name: in.Name, CreatedBy: k.ID, CreatedAt: time.Now().UTC()}
	s.mu.Lock()
	s.projects[k.OrganizationID] = append(s.projects[k.OrganizationID], p)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, p)
}

func (s *store) listTasks(w http.ResponseWriter, r *http.Request) {
	k, _ := client.KeyFromContext(r.Context())
	s.mu.Lock()
	out := append([]Task{}, s.tasks[k.OrganizationID]...)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (s *store) createTask(w http.ResponseWriter, r *http.Request) {
	k, _ := client.KeyFromContext(r.Context())
	var in struct {
		Title     string `json:"title"`
		ProjectID string `json:"project_id"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Title = strings.TrimSpace(in.Title); in.Title == "" || len(in.Title) > 200 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "invalid_title", "message": "title is 1 to 200 characters"})
		return
	}
	t := Task{ID: newID("task_"), Title: in.Title, ProjectID: in.ProjectID, CreatedBy: k.ID, CreatedAt: time.Now().UTC()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.ProjectID != "" && !hasProject(s.projects[k.OrganizationID], in.ProjectID) {
		writeJSON(w, http.StatusNotFound, map[string]string{"code": "project_not_found", "message": "no such project"})
		return
	}
	s.tasks[k.OrganizationID] = append(s.tasks[k.OrganizationID], t)
	writeJSON(w, http.StatusCreated, t)
}

func hasProject(ps []Project, id string) bool {
	for _, p := range ps {
		if p.ID == id {
			return true
		}
	}
	return false
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "invalid_json", "message": "the body must be one JSON object of known fields"})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%x", prefix, b)
}
