"""A mesh's trust material (CAs, certificates, nkeys, the roster) and its permissions.

Imports only the standard library, cryptography, nkeys, `harmony.config` and the subject
scheme (`harmony.mesh.subjects`, a stdlib-only leaf); the mesh, actors, sim and CLI use it.
"""
