"""Portal pages of the tickets domain: projects, their board and requirements."""
