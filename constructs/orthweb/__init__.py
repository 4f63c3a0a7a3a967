"""Orthweb: a secure Orthanc DICOM deployment on AWS, as CDK for Terraform constructs."""
